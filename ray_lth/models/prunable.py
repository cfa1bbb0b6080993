"""Which parameters IMP prunes: every conv/linear weight outside the first conv and the heads.

Names are listed exactly from module types, never found by substring, so a parameter called
``fc_like`` or a head nested as ``fc.0`` is classified by its module path alone.
"""

from typing import Dict, Iterable, List

import torch
from torch import nn


def _inside(module_name: str, roots: Iterable[str]) -> bool:
    return any(module_name == root or module_name.startswith(root + ".") for root in roots)


def prunable_parameter_names(model: nn.Module, never_pruned: Iterable[str]) -> List[str]:
    """Weights of Conv2d/Linear modules not inside any module named in ``never_pruned``.

    Biases, BatchNorm and every other parameter are never pruned.
    """
    never_pruned = tuple(never_pruned)
    names = [
        f"{module_name}.weight"
        for module_name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not _inside(module_name, never_pruned)
    ]
    if not names:
        raise ValueError(f"{type(model).__name__} has no prunable conv/linear weights")
    return names


def prunable_parameters(model: nn.Module, never_pruned: Iterable[str]) -> Dict[str, torch.nn.Parameter]:
    params = dict(model.named_parameters())
    return {name: params[name] for name in prunable_parameter_names(model, never_pruned)}


def replace_head(model: nn.Module, head_name: str, head: nn.Module) -> nn.Module:
    """Swap the task head (paper: "a task-specific final linear layer") in place."""
    if not hasattr(model, head_name):
        raise ValueError(f"{type(model).__name__} has no head module {head_name!r}")
    setattr(model, head_name, head)
    return model
