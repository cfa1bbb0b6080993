"""A ticket to take away: one round's mask plus what is needed to rebuild its subnetwork.

A ticket is a folder::

    mask.rlthmask     the round's mask, bit-packed with a SHA-256 (ray_lth.masks); its header
                      also holds the ticket's metadata, so the checksum covers the metadata too
    ticket.json       the same metadata, readable, plus the mask file's SHA-256
    rewind_state.pt   only when the weights are not a file the user has (θ_0, θ_k% or re-init):
                      the backbone's state at the rewind point, read from the trajectory's
                      captured θ_k% or rewind_file, or rebuilt from the seed, verified by digest

The metadata names the model, the task, the rewind point, the round, its sparsity and metrics,
and identifies the pre-trained weights θ_p by their SHA-256, not by path: ``load_ticket`` refuses
a tampered mask, edited metadata or different weights, naming the file that disagrees.
"""

import io
import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from .config import ImpConfig
from .imp import _INIT, load_theta_p, round_generator, start_backbone
from .experiment_layout import MASK_FILE, STATE_FILE
from .trajectory_state import RewindReference
from .masks import (Mask, MaskFileError, check_compatible, count_kept, count_total, load_mask, mask_digest,
                    read_mask_header, save_mask)
from .models import build_model, get_model_spec, prunable_parameters
from .rewind import apply_mask, backbone_state, state_digest
from .storage import Location, location
from .weights import file_sha256

TICKET_MASK = "mask.rlthmask"
TICKET_META = "ticket.json"
TICKET_REWIND = "rewind_state.pt"
TICKET_FORMAT = "ray_lth-ticket/1"


class TicketError(ValueError):
    """A ticket that is incomplete, tampered with, or used with weights it was not found with."""


@dataclass(frozen=True)
class Ticket:
    folder: Path
    mask: Mask
    metadata: dict
    rewind_state: Optional[dict]  # the backbone at θ_0 / θ_k% / re-init start; None when θ_p comes from a weights file


def _finished_round(trajectory_dir: Location, round_index: int) -> tuple:
    """(record, rewind reference, mask) of a finished round, the mask checked against its record."""
    state_path = trajectory_dir / STATE_FILE
    try:
        saved = json.loads(state_path.read_text())
        records = {int(r["round"]): r for r in saved["records"]}
        reference = RewindReference(**saved["rewind"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TicketError(f"{state_path}: unreadable trajectory state ({error})") from None
    if round_index not in records:
        raise TicketError(f"{state_path}: round {round_index} has not finished; finished rounds: {sorted(records)}")
    record = records[round_index]
    mask_path = trajectory_dir / MASK_FILE.format(round_index)
    mask = load_mask(mask_path)
    if not mask_digest(mask).startswith(record["mask_digest"]):
        raise TicketError(f"{mask_path} is not the mask round {round_index} trained under "
                          f"(trajectory.json records digest {record['mask_digest']})")
    return record, reference, mask


def export_ticket(trajectory_dir, round_index: int, config: Mapping, out_dir, source: str = "") -> Path:
    """Write the ticket of round ``round_index`` of the trajectory in ``trajectory_dir`` (a
    folder holding ``trajectory.json`` and the round masks: a local path or a storage URI) run
    with ``config`` (its flat config dict). Refuses an existing non-empty ``out_dir``."""
    trajectory_dir = location(trajectory_dir)
    out_dir = Path(out_dir)
    record, reference, mask = _finished_round(trajectory_dir, round_index)
    # a trial's config lists only what its space set: the rest are ImpConfig's defaults
    given = dict(config)
    config = {**{f.name: f.default for f in fields(ImpConfig) if f.default is not MISSING}, **config}
    for key in ("model", "task"):
        if key not in config:
            raise TicketError(f"the trajectory's config lacks {key!r}; got keys {sorted(config)}")
    model = str(config["model"])
    weights = config.get("weights")
    metadata = {
        "format": TICKET_FORMAT,
        "model": model,
        "task": config["task"],
        "num_outputs": reference.num_outputs,
        "rewind": config["rewind"],
        "seed": int(config["seed"]),
        "round": round_index,
        "sparsity": record["sparsity"],
        "kept": count_kept(mask),
        "total": count_total(mask),
        "metric": record["metric"],
        "metrics": record["metrics"],
        "epochs": record["epochs"],
        "mask_digest": mask_digest(mask),
        "weights": {"name": Path(weights).name, "sha256": file_sha256(weights),
                    "format": config.get("weights_format", "auto")} if weights else None,
        "config": {k: v for k, v in config.items() if k not in ("mask_file", "data_root")},
        "source": source or str(trajectory_dir),
    }
    # θ_p is identified by its hash (the user has the file); any other start travels with the ticket
    keep_rewind = not (config["rewind"] == "pretrained" and weights)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TicketError(f"{out_dir} exists and is not empty: choose another ticket folder")
    rewind = io.BytesIO()
    if keep_rewind:
        torch.save(_rewind_backbone(trajectory_dir, reference, given), rewind)
    out_dir.mkdir(parents=True, exist_ok=True)
    if keep_rewind:
        (out_dir / TICKET_REWIND).write_bytes(rewind.getvalue())
        metadata["rewind_state_sha256"] = file_sha256(out_dir / TICKET_REWIND)
    save_mask(mask, out_dir / TICKET_MASK, metadata)
    readable = {**metadata, "mask_sha256": file_sha256(out_dir / TICKET_MASK)}
    (out_dir / TICKET_META).write_text(json.dumps(readable, indent=1, default=str))
    return out_dir


def _rewind_backbone(trajectory_dir: Location, reference: RewindReference, config: Mapping) -> dict:
    """The backbone at the trajectory's rewind point: read from its captured θ_k% or rewind_file,
    or rebuilt from the seed (and the θ_p file) as round 0 built it; verified by digest."""
    if reference.kind != "recompute":
        try:
            return backbone_state(reference.read(trajectory_dir))
        except ValueError as error:
            raise TicketError(str(error)) from None
    # only what the backbone needs: the task's data and the masks are not read
    values = {k: v for k, v in config.items() if k not in ("mask_file", "data_root")}
    try:
        reference.check_source()
        _, backbone, _ = start_backbone(ImpConfig.from_dict(values), reference.num_outputs)
    except ValueError as error:
        raise TicketError(f"{trajectory_dir}: cannot rebuild its rewind point: {error}") from None
    state = backbone.state_dict()
    if state_digest(state) != reference.backbone_digest:
        raise TicketError(f"{trajectory_dir / STATE_FILE}: the backbone rebuilt from seed {config.get('seed', 0)} has digest "
                          f"{state_digest(state)}, the trajectory recorded {reference.backbone_digest} "
                          f"(another torch version draws another θ_0?)")
    return state


def load_ticket(folder, weights=None) -> Ticket:
    """Read and verify a ticket: the mask file's own checksum, its SHA-256 against ticket.json,
    ticket.json against the metadata inside the mask file, the rewind state's hash, and
    ``weights`` (the θ_p file) against the hash the ticket was found with."""
    folder = Path(folder)
    meta_path, mask_path = folder / TICKET_META, folder / TICKET_MASK
    try:
        readable = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise TicketError(f"{meta_path}: unreadable ticket metadata ({error})") from None
    if readable.get("format") != TICKET_FORMAT:
        raise TicketError(f"{meta_path}: format {readable.get('format')!r}, this ray_lth reads {TICKET_FORMAT!r}")
    if not mask_path.is_file():
        raise TicketError(f"{mask_path}: the ticket's mask file is missing")
    if file_sha256(mask_path) != readable.get("mask_sha256"):
        raise TicketError(f"{mask_path}: SHA-256 differs from the one in {meta_path.name} (mask tampered with or replaced)")
    try:
        mask = load_mask(mask_path)
        metadata = read_mask_header(mask_path)["metadata"]
    except MaskFileError as error:
        raise TicketError(str(error)) from None
    written = {k: v for k, v in readable.items() if k != "mask_sha256"}
    if json.loads(json.dumps(metadata, default=str)) != written:
        changed = sorted(k for k in set(written) | set(metadata) if written.get(k) != metadata.get(k))
        raise TicketError(f"{meta_path}: fields {changed} differ from the metadata sealed in {mask_path.name}")
    if mask_digest(mask) != metadata["mask_digest"]:
        raise TicketError(f"{mask_path}: mask content does not match its recorded digest")
    expected = metadata["weights"]
    if expected is not None:
        if weights is None:
            raise TicketError(f"ticket {folder} was found from weights {expected['name']} "
                              f"(sha256 {expected['sha256'][:12]}…): pass that file")
        found = file_sha256(weights)
        if found != expected["sha256"]:
            raise TicketError(f"weights {weights}: sha256 {found[:12]}… differs from the ticket's "
                              f"{expected['name']} (sha256 {expected['sha256'][:12]}…): not the weights this ticket was found with")
    elif weights is not None and metadata["rewind"] == "init":
        raise TicketError(f"ticket {folder} starts from the random init θ_0, not from weights: drop {weights}")
    rewind_state = None
    if "rewind_state_sha256" in metadata:
        rewind_path = folder / TICKET_REWIND
        if not rewind_path.is_file() or file_sha256(rewind_path) != metadata["rewind_state_sha256"]:
            raise TicketError(f"{rewind_path}: missing or its SHA-256 differs from the ticket's")
        rewind_state = torch.load(rewind_path, map_location="cpu", weights_only=True)
    return Ticket(folder, mask, metadata, rewind_state)


def build_ticket_model(ticket: Ticket, weights=None) -> nn.Module:
    """The ticket's subnetwork m ⊙ θ: the model at its rewind point with the mask applied.

    With θ_p from ``weights`` the head is initialised as the trajectory's round 0 was (seeded
    by (seed, round 0), as ``imp._fresh_model`` does), so the whole model is the same."""
    meta = ticket.metadata
    spec = get_model_spec(meta["model"])
    torch.manual_seed(round_generator(meta["seed"], 0, _INIT).initial_seed())
    model = build_model(meta["model"], meta["num_outputs"])
    if ticket.rewind_state is not None:
        model.load_state_dict(backbone_state(ticket.rewind_state))  # its task's heads are not the ticket's
    else:
        if weights is None:
            raise TicketError(f"ticket {ticket.folder} needs its θ_p weights file ({meta['weights']['name']})")
        load_theta_p(model, spec, meta["task"], weights, meta["weights"]["format"])
    check_compatible(ticket.mask, prunable_parameters(model, spec.never_pruned), what=f"ticket {ticket.folder}")
    apply_mask(model, ticket.mask)
    return model.eval()

