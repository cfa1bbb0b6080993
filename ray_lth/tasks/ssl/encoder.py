"""The model a contrastive round trains: the backbone IMP prunes, minus its task head, followed
by a 2-layer MLP projection head (simCLR and MoCo v2), which is a head and so never pruned.

The trunk reuses the backbone's own child modules, so it shares their parameters: the mask, the
rewind state and pruning stay the backbone's, and the backbone itself is never modified (its
``fc`` stays in place, unused; replacing it would change the state dict that rewinding restores).
"""

from collections import OrderedDict

import torch
from torch import nn


def backbone_trunk(backbone: nn.Module, spec) -> nn.Sequential:
    """The backbone's children before its heads, in order, then a flatten: the features the head
    sees. Valid for models whose forward runs their children in order with the heads last (every
    registered model: torchvision ResNets, CifarResNet, ConvNet); anything else is refused."""
    children = list(backbone.named_children())
    heads = tuple(spec.heads)
    if tuple(name for name, _ in children[-len(heads):]) != heads:
        raise ValueError(f"{type(backbone).__name__}: its heads {heads} must be its last child modules to "
                         f"cut the trunk off before them; children are {[name for name, _ in children]}")
    return nn.Sequential(OrderedDict(children[:-len(heads)] + [("flatten", nn.Flatten(1))]))


def projection_head(feature_dim: int, projection_dim: int) -> nn.Sequential:
    """Linear(d, d) -> ReLU -> Linear(d, projection_dim): simCLR v1's and MoCo v2's head
    (2048 -> 2048 -> 128 on a ResNet-50)."""
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True),
                         nn.Linear(feature_dim, projection_dim))


class ContrastiveEncoder(nn.Module):
    """trunk (shared with the backbone) -> projection head; returns the projection z."""

    def __init__(self, backbone: nn.Module, spec, projection_dim: int):
        super().__init__()
        if spec.feature_dim < 1:
            raise ValueError(f"model {spec.name!r} declares no feature_dim: a projection head cannot be sized")
        self.trunk = backbone_trunk(backbone, spec)
        # drawn from the global RNG, which IMP seeds per (seed, round): reproducible and resumable
        self.projector = projection_head(spec.feature_dim, projection_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.trunk(images))
