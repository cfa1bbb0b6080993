"""Masks: ``{param_name: bool tensor}`` over the prunable weights, and their file format.

File layout (all integers little-endian)::

    b"RLTHMASK" | version u16 | header_len u32 | zlib(header JSON) | packed bits | sha256

The header names every tensor with its shape and the sparsity; the bits of all tensors are
packed back to back in header order (1 bit per weight); the SHA-256 covers everything before
it, so a truncated or bit-flipped file is refused instead of loading as a wrong mask.
"""

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Dict, Iterable, Mapping, Union

import numpy as np
import torch

from .storage import Location, location

Mask = Dict[str, torch.Tensor]

MAGIC = b"RLTHMASK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")
_DIGEST_BYTES = 32


class MaskFileError(ValueError):
    """A mask file that is not a complete, uncorrupted ray_lth mask file."""


def ones_mask(weights: Mapping[str, torch.Tensor]) -> Mask:
    return {name: torch.ones_like(w, dtype=torch.bool, device="cpu") for name, w in weights.items()}


def count_kept(mask: Mapping[str, torch.Tensor]) -> int:
    return int(sum(int(m.sum()) for m in mask.values()))


def count_total(mask: Mapping[str, torch.Tensor]) -> int:
    return int(sum(m.numel() for m in mask.values()))


def sparsity(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of prunable weights that are pruned (0 = dense)."""
    return 1.0 - count_kept(mask) / count_total(mask)


def check_compatible(mask: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], what: str = "mask") -> None:
    """Raise ValueError naming every parameter whose name or shape disagrees."""
    missing = sorted(set(weights) - set(mask))
    unexpected = sorted(set(mask) - set(weights))
    wrong_shape = sorted(
        f"{n}: {tuple(mask[n].shape)} vs {tuple(weights[n].shape)}"
        for n in set(mask) & set(weights)
        if tuple(mask[n].shape) != tuple(weights[n].shape)
    )
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{what} does not fit the model's prunable weights: missing={missing} "
            f"unexpected={unexpected} wrong_shape={wrong_shape}"
        )


def save_mask(mask: Mapping[str, torch.Tensor], path: Union[str, Path, Location], metadata: Mapping = None):
    """Write ``mask`` bit-packed with a checksum, atomically, to a local path or a storage Location."""
    names = list(mask)
    bits = [mask[n].detach().to("cpu", torch.bool).reshape(-1).numpy() for n in names]
    payload = np.packbits(np.concatenate(bits)).tobytes() if bits else b""
    header = {
        "names": names,
        "shapes": [list(mask[n].shape) for n in names],
        "kept": count_kept(mask),
        "total": count_total(mask),
        "sparsity": sparsity(mask),
        "metadata": dict(metadata or {}),
    }
    header_bytes = zlib.compress(json.dumps(header).encode())
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + payload
    location(path).write_bytes(body + hashlib.sha256(body).digest())
    return path if isinstance(path, Location) else Path(path)


def read_mask_header(path: Union[str, Path, Location]) -> dict:
    return _read(path)[0]


def load_mask(path: Union[str, Path, Location]) -> Mask:
    header, payload = _read(path)
    sizes = [int(np.prod(shape)) for shape in header["shapes"]]
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=sum(sizes)).astype(bool)
    mask, start = {}, 0
    for name, shape, size in zip(header["names"], header["shapes"], sizes):
        mask[name] = torch.from_numpy(bits[start : start + size].copy()).reshape(shape)
        start += size
    if count_kept(mask) != header["kept"]:
        raise MaskFileError(f"{path}: kept-weight count disagrees with its header")
    return mask


def _read(path):
    try:
        data = location(path).read_bytes()
    except FileNotFoundError:
        raise MaskFileError(f"mask file {path} does not exist") from None
    if len(data) < _PREFIX.size + _DIGEST_BYTES:
        raise MaskFileError(f"{path}: too short to be a mask file ({len(data)} bytes; truncated?)")
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise MaskFileError(f"{path}: not a ray_lth mask file (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise MaskFileError(f"{path}: mask format version {version}, this ray_lth reads {FORMAT_VERSION}")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise MaskFileError(f"{path}: checksum mismatch (file truncated or corrupted)")
    start = _PREFIX.size
    header = json.loads(zlib.decompress(body[start : start + header_len]))
    payload = body[start + header_len :]
    expected = (sum(int(np.prod(s)) for s in header["shapes"]) + 7) // 8
    if len(payload) != expected:
        raise MaskFileError(f"{path}: payload has {len(payload)} bytes, header implies {expected}")
    return header, payload


def mask_digest(mask: Mapping[str, torch.Tensor], names: Iterable[str] = None) -> str:
    """A content hash of a mask (for naming, caching and comparing masks)."""
    h = hashlib.sha256()
    for name in names or sorted(mask):
        h.update(name.encode())
        h.update(np.packbits(mask[name].to("cpu", torch.bool).reshape(-1).numpy()).tobytes())
    return h.hexdigest()
