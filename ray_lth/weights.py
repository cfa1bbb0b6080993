"""Pre-trained weights θ_p from a local file, never downloaded.

Formats:
- ``torchvision``: a plain state dict of a torchvision-style ResNet (``conv1.weight``, ``layer1.0...``);
- ``moco``: a MoCo v2 checkpoint, ``{"state_dict": {"module.encoder_q.<resnet key>": ...}}``;
  its key encoder (``module.encoder_k.*``) and queue are not read;
- ``simclr``: a simCLR checkpoint converted to PyTorch, ``{"state_dict": <torchvision-style keys>}``
  (tonylins/simclr-converter's ``fc`` is simCLR's supervised linear head, not its projection head);
- ``auto``: recognise one of the above from the file's keys.

Every file is read with ``torch.load(weights_only=True)`` (no code runs). ``load_pretrained``
does not load the task head — it is task-specific (paper, section 3) — except for the task the
weights were trained on (supervised ImageNet), whose head the file holds; modules a model
declares fresh (the CIFAR stem) are never loaded. Any other missing, unexpected or mis-shaped key
is an error that lists them. A file's contrastive projection head (MoCo v2's ``fc.0``/``fc.2``
MLP; a simCLR file's, where it has one) is γ_p for the file's own pre-training task only:
``read_projection_head`` returns it for that task to load.
"""

import functools
import hashlib
import io
import pickle
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from .storage import is_file, is_uri, location

WEIGHTS_FORMATS = ("auto", "torchvision", "moco", "simclr")
_MOCO_PREFIX = "module.encoder_q."


class WeightsError(ValueError):
    """A weights file that cannot serve as θ_p for the model; the message names the file."""


def file_sha256(path) -> str:
    """SHA-256 of a local file or of an object in storage (a URI), read in 1 MiB chunks."""
    h = hashlib.sha256()
    source = location(path)
    with source.fs.open_input_stream(source.path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shown(path) -> str:
    """How messages name a weights file: a URI without its options (they may hold credentials)."""
    return str(location(path)) if is_uri(path) else str(path)


def load_weights_only(path, what: str = "weights file"):
    """What a torch file holds, loaded as plain tensors (``weights_only``: runs no code), from a
    local path or a storage URI; a WeightsError naming the file otherwise."""
    if not is_file(path):
        raise WeightsError(f"{what} {_shown(path)} does not exist")
    # a URI (every node of a cluster reads θ_p from the experiment's storage) is read through the
    # storage layer into memory; torch.load reads it from there just as from a file
    source = io.BytesIO(location(path).read_bytes()) if is_uri(path) else Path(path)
    path = _shown(path)
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):  # no pickled object refused: not a torch file at all
            reason = str(error).partition("WeightsUnpickler error:")[2].strip().splitlines()
            raise WeightsError(f"{path}: not a readable torch weights file (unpickling failed: "
                               f"{reason[0][:120] if reason else 'unknown'})") from None
        # torch's own message advises weights_only=False, i.e. running the file's code: not repeated
        raise WeightsError(
            f"{path}: holds pickled objects other than tensors (a whole model, training code ...), and "
            f"ray_lth reads weights only as plain tensors (torch.load(weights_only=True), which runs no "
            f"code): save a state dict instead, torch.save(model.state_dict(), path)"
        ) from None
    except Exception as error:  # not a torch file, a truncated one ...
        raise WeightsError(f"{path}: not a readable torch weights file ({type(error).__name__}: "
                           f"{str(error)[:120]})") from None
    return obj


def read_state_dict(path, weights_format: str = "auto") -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone state dict in a file, in torchvision key names, and the format found."""
    if weights_format not in WEIGHTS_FORMATS:
        raise WeightsError(f"weights_format must be one of {list(WEIGHTS_FORMATS)}, got {weights_format!r}")
    obj = load_weights_only(path)
    path = _shown(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (a mapping), found {type(obj).__name__}")
    found = _detect_format(obj) if weights_format == "auto" else weights_format
    if found == "torchvision":
        state = obj
    else:
        state = obj.get("state_dict")
        if not isinstance(state, Mapping):
            raise WeightsError(f"{path}: a {found} checkpoint needs a 'state_dict' mapping; keys found: {_preview(obj)}")
        if found == "moco":
            if not any(k.startswith(_MOCO_PREFIX) for k in state):
                raise WeightsError(f"{path}: no '{_MOCO_PREFIX}*' keys, so not a MoCo v2 checkpoint; keys: {_preview(state)}")
            state = {k[len(_MOCO_PREFIX):]: v for k, v in state.items() if k.startswith(_MOCO_PREFIX)}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: entries that are not tensors: {not_tensors[:5]}")
    return dict(state), found


def file_format(path, weights_format: str = "auto") -> str:
    """The format ``read_state_dict`` reads ``path`` as: ``weights_format`` itself, or under
    ``auto`` the one the file's keys show (read once more, without building a model)."""
    if weights_format not in WEIGHTS_FORMATS:
        raise WeightsError(f"weights_format must be one of {list(WEIGHTS_FORMATS)}, got {weights_format!r}")
    if weights_format != "auto":
        return weights_format
    # a sweep builds a config per trial from the same θ_p: read it once (a changed local file is re-read)
    stamp = None if is_uri(str(path)) else (lambda st: (st.st_size, st.st_mtime_ns))(Path(path).stat())
    return _detected_format(str(path), stamp)


@functools.lru_cache(maxsize=16)
def _detected_format(path: str, stamp) -> str:
    obj = load_weights_only(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{_shown(path)}: expected a state dict (a mapping), found {type(obj).__name__}")
    return _detect_format(obj)


def load_pretrained(model: nn.Module, path, heads: Iterable[str], weights_format: str = "auto",
                    load_heads: bool = False, not_from_weights: Iterable[Tuple[str, str]] = ()) -> str:
    """Load θ_p from ``path`` into ``model``. Returns the format found.

    The task ``heads`` are left as they are (new for the task), unless ``load_heads``: the task is
    the one θ_p was trained on, so the file's head is the task's own γ_p and must fit it. The
    modules of ``not_from_weights`` ((module, reason) pairs, e.g. the CIFAR stem's conv1) are
    never loaded. Prints one line naming the keys left out and why."""
    state, found = read_state_dict(path, weights_format)
    path = _shown(path)
    heads = tuple(heads)
    skipped = _skipped_modules(heads, load_heads, not_from_weights)

    def module_of(key: str):
        return _module_of(key, skipped)

    backbone = {k: v for k, v in state.items() if module_of(k) is None}
    expected = {k: v for k, v in model.state_dict().items() if module_of(k) is None}
    missing = sorted(set(expected) - set(backbone))
    unexpected = sorted(set(backbone) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(backbone[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(backbone) & set(expected)
        if backbone[k].shape != expected[k].shape
    )
    head_misfits = [k for k in missing + unexpected + wrong_shape if any(k.startswith(h + ".") for h in heads)]
    if load_heads and head_misfits:
        raise WeightsError(
            f"{path} ({found} format): the task is the one these weights were trained on, so their head is "
            f"loaded as the task's own, but it does not fit: {_preview(head_misfits)} (the file needs a head "
            f"with as many outputs as the task has classes, e.g. θ_Img's fc for ImageNet's 1000 class folders)"
        )
    if missing or unexpected or wrong_shape:
        raise WeightsError(
            f"{path} ({found} format) does not fit {type(model).__name__}: "
            f"missing keys {_preview(missing)}; unexpected keys {_preview(unexpected)}; "
            f"wrong shapes {_preview(wrong_shape)}"
        )
    model.load_state_dict(backbone, strict=False)
    left_out = {}
    for key in state:
        if module_of(key) is not None:
            left_out.setdefault(module_of(key), []).append(key)
    reasons = "; ".join(f"{', '.join(keys)} ({module}: {skipped[module]})" for module, keys in left_out.items())
    print(f"ray_lth: θ_p {Path(path).name} ({found}): {len(backbone)} keys loaded; "
          f"not loaded: {reasons or 'none'}", file=sys.stderr, flush=True)
    return found


def keys_from_weights(keys: Iterable[str], heads: Iterable[str], load_heads: bool = False,
                      not_from_weights: Iterable[Tuple[str, str]] = ()) -> List[str]:
    """The model ``keys`` that ``load_pretrained`` fills from a file with these arguments: all but
    the task heads (unless ``load_heads``) and the ``not_from_weights`` modules (it fills exactly
    these, or refuses the file)."""
    skipped = _skipped_modules(tuple(heads), load_heads, not_from_weights)
    return [k for k in keys if _module_of(k, skipped) is None]


def _skipped_modules(heads: Tuple[str, ...], load_heads: bool, not_from_weights) -> Dict[str, str]:
    """module -> why ``load_pretrained`` leaves it as it is."""
    skipped = {} if load_heads else {h: "task head, new for this task" for h in heads}
    skipped.update(dict(not_from_weights))
    return skipped


def _module_of(key: str, modules) -> Optional[str]:
    return next((m for m in modules if key == m or key.startswith(m + ".")), None)


# a 2-layer MLP projection head in a file, as (first linear, second linear) prefixes: MoCo v2's
# ``fc = Sequential(Linear, ReLU, Linear)`` (and a simCLR file saved in that layout), and the
# paper's own simCLR code (``Projection_head``: ``fc.fc1``, ``fc.fc2``)
_PROJECTION_LAYOUTS = (("fc.0", "fc.2"), ("fc.fc1", "fc.fc2"))


def read_projection_head(path, weights_format: str = "auto") -> Tuple[Optional[Dict[str, torch.Tensor]], Dict[str, str]]:
    """The file's MLP projection head in ``projection_head``'s names (``0.weight``, ``0.bias``,
    ``2.weight``, ``2.bias``), or None when it holds none; and each name's key in the file."""
    state, found = read_state_dict(path, weights_format)
    path = _shown(path)
    for first, second in _PROJECTION_LAYOUTS:
        names = {f"{new}.{kind}": f"{old}.{kind}" for new, old in (("0", first), ("2", second))
                 for kind in ("weight", "bias")}
        present = [old for old in names.values() if old in state]
        if len(present) == len(names):
            return {new: state[old] for new, old in names.items()}, names
        if present:
            raise WeightsError(f"{path} ({found} format): an incomplete projection head: has {present}, "
                               f"needs {sorted(names.values())}")
    return None, {}


def save_weights(model: nn.Module, path) -> str:
    """Save a torchvision-style state dict (readable by ``load_pretrained``); returns its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)
    return file_sha256(path)


def _detect_format(obj: Mapping) -> str:
    state = obj.get("state_dict")
    if isinstance(state, Mapping):
        return "moco" if any(str(k).startswith(_MOCO_PREFIX) for k in state) else "simclr"
    return "torchvision"


def _preview(keys, limit: int = 8) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}" if keys else "none"
