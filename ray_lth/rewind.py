"""Rewind points: the weights every IMP round restarts from.

- ``pretrained``: θ_p, the pre-trained weights (plus the task head's initial weights);
- ``init``: θ_0, the random initialisation (no pre-trained weights at all);
- ``early``: θ_k%, the weights after ``rewind_fraction`` of round 0's training iterations
  (round 0 starts from θ_p when weights are given, else from θ_0, as the paper's θ_5%);
- ``reinit``: a fresh random initialisation every round (the random re-init baseline).
"""

import math
from typing import Dict, Mapping

import torch
from torch import nn

REWIND_POINTS = ("pretrained", "init", "early", "reinit")


def capture_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """A detached CPU copy of the full state (weights, BN statistics, head)."""
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


@torch.no_grad()
def restore_state(model: nn.Module, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` and zero the pruned weights: unpruned entries are bit-exact."""
    model.load_state_dict(state)
    apply_mask(model, mask)


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights of ``model`` in place."""
    params = dict(model.named_parameters())
    for name, keep in mask.items():
        params[name].mul_(keep.to(params[name].device, params[name].dtype))


def early_rewind_iteration(total_iterations: int, fraction: float) -> int:
    """The iteration after which θ_k% is captured: ceil(fraction * total), at least 1."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"rewind_fraction must be in (0, 1), got {fraction}")
    return max(1, math.ceil(fraction * total_iterations))
