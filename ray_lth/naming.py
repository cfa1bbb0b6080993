"""Readable, stable names for groups (trajectories that differ only by seed) and trials."""

import hashlib
import json
from typing import Mapping

# Fields that name a group by themselves; any other differing field goes into a short hash.
_NAMED = ("model", "task", "rewind")
_NOT_GROUPING = ("seed", "device", "num_workers", "data_root", "mask_file", "mask_label", "rewind_file")


def group_name(config: Mapping) -> str:
    """e.g. ``resnet20-digits-rewind_pretrained-3f2a9c`` (the hash covers every other field);
    a transferred ticket adds its label: ``resnet20-digits-m_shapes-r3-rewind_pretrained-...``.
    The mask file itself is left out: each seed's ticket is its own file, yet the seeds form one group."""
    rest = {k: v for k, v in sorted(config.items()) if k not in _NAMED and k not in _NOT_GROUPING}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:6]
    ticket = f"-{config['mask_label']}" if config.get("mask_label") else ""
    return f"{config['model']}-{config['task']}{ticket}-rewind_{config['rewind']}-{digest}"


def trial_name(config: Mapping) -> str:
    return f"{group_name(config)}-seed{config['seed']}"
