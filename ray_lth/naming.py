"""Readable, stable names for groups (trajectories that differ only by seed) and trials."""

import hashlib
import json
from typing import Mapping

# Fields that name a group by themselves; any other differing field goes into a short hash.
_NAMED = ("model", "task", "rewind")
_NOT_GROUPING = ("seed", "device", "num_workers", "workers_per_trial", "data_root", "mask_file", "mask_label", "rewind_file")


# what each rewind point is called in plots and tables (paper's notation)
REWIND_SYMBOLS = {"pretrained": "θ_p", "init": "θ_0", "early": "θ_k%", "pretrained_early": "θ_p+k%",
                  "reinit": "re-init"}


def rewind_point(config: Mapping) -> str:
    """The rewind point a config restarts from: its ``rewind``, except that ``early`` from a
    weights file is ``pretrained_early`` (θ_p + k % of training), not the paper's θ_k% (k % of
    training from the random init θ_0)."""
    rewind = config.get("rewind", "pretrained")
    return "pretrained_early" if rewind == "early" and config.get("weights") else str(rewind)


def rewind_symbol(config: Mapping) -> str:
    point = rewind_point(config)
    return REWIND_SYMBOLS.get(point, point)


def group_name(config: Mapping) -> str:
    """e.g. ``resnet20-digits-rewind_pretrained-3f2a9c`` (the hash covers every other field);
    a transferred ticket adds its label: ``resnet20-digits-m_shapes-r3-rewind_pretrained-...``.
    The mask file itself is left out: each seed's ticket is its own file, yet the seeds form one group."""
    rest = {k: v for k, v in sorted(config.items()) if k not in _NAMED and k not in _NOT_GROUPING}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:6]
    ticket = f"-{config['mask_label']}" if config.get("mask_label") else ""
    return f"{config['model']}-{config['task']}{ticket}-rewind_{rewind_point(config)}-{digest}"


def trial_name(config: Mapping) -> str:
    return f"{group_name(config)}-seed{config['seed']}"
