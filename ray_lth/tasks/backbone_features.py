"""The pruned backbone as a feature extractor for detectors and segmenters.

Detectors and segmenters are built *around* the backbone IMP prunes, sharing its modules (and so
its parameters): torchvision's ``IntermediateLayerGetter`` reuses the backbone's own children, so
the mask, the rewind state and the pruning stay the backbone's. Only the stage outputs are read;
the first conv stays dense (it is never pruned) and every neck and head is new and dense.
"""

from typing import List, Tuple

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

STAGES = ("layer1", "layer2", "layer3", "layer4")


def stage_names(backbone: nn.Module) -> List[str]:
    """The residual stages the backbone has, in order (CIFAR ResNets stop at layer3)."""
    children = dict(backbone.named_children())
    names = [name for name in STAGES if name in children]
    if not names:
        raise ValueError(f"{type(backbone).__name__} has no stage named {STAGES}: it cannot feed a detector")
    return names


@torch.no_grad()
def stage_geometry(backbone: nn.Module, stages: List[str], image_size: int) -> Tuple[List[int], List[int]]:
    """Channels and strides of each stage's output, from one forward pass in eval mode (so no
    batch-norm statistics move)."""
    getter = IntermediateLayerGetter(backbone, {name: name for name in stages})
    was_training = backbone.training
    backbone.eval()
    try:
        device = next(backbone.parameters()).device
        outputs = getter(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        backbone.train(was_training)
    channels = [outputs[name].shape[1] for name in stages]
    strides = [image_size // outputs[name].shape[-1] for name in stages]
    return channels, strides


class FrozenNormWrapper(nn.Module):
    """Runs ``model`` with the backbone's batch norms frozen: statistics in eval mode and affine
    parameters not trained, whatever ``train()`` is called with. Detectors train with a few
    images a batch, too few for batch statistics (torchvision and detectron2 freeze them too);
    unlike swapping in FrozenBatchNorm2d, this keeps the backbone's state-dict names unchanged."""

    def __init__(self, model: nn.Module, backbone: nn.Module):
        super().__init__()
        self.model = model
        self._frozen = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]  # a plain list: these are registered under ``model``
        for norm in self._frozen:
            norm.requires_grad_(False)
        self.train(True)

    def train(self, mode: bool = True):
        super().train(mode)
        for norm in self._frozen:
            norm.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


def dilate_last_stage(backbone: nn.Module) -> None:
    """Output stride 16 for a torchvision ResNet, as ``replace_stride_with_dilation=[False,
    False, True]`` builds it: layer4 keeps its resolution and dilates its 3x3 convs by 2 (its
    first block keeps dilation 1). DeepLab's encoder; the weights are untouched, so θ_p and the
    mask apply unchanged."""
    stage = getattr(backbone, "layer4", None)
    if stage is None:
        raise ValueError(f"{type(backbone).__name__} has no layer4 to dilate")
    for index, block in enumerate(stage):
        for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                dilation = 1 if index == 0 else 2
                conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
