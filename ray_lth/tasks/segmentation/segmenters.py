"""DeepLabv3 and DeepLabv3+ around the pruned backbone, from torchvision's ASPP.

DeepLabv3+ (Chen et al. 2018, the paper's segmenter) = ASPP on the last stage + a decoder that
upsamples it, concatenates 1x1-projected low-level features (the first stage of stride >= 2:
ResNet-50's layer1, at stride 4) and refines with two 3x3 convs; DeepLabv3 has no decoder. A
torchvision ResNet-50 runs at output stride 16 (layer4 dilated). ASPP's rates are (6, 12, 18)
for a 32-cell feature map (513-px VOC crops at stride 16) and scale with the map, so small
embedded images do not dilate past their own size. ASPP, decoder and classifier are dense.
"""

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP

from ..backbone_features import dilate_last_stage, stage_geometry, stage_names

SEGMENTERS = ("deeplabv3plus", "deeplabv3")


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def aspp_rates(map_size: int) -> Tuple[int, ...]:
    return tuple(max(1, round(rate * map_size / 32)) for rate in (6, 12, 18))


class DeepLab(nn.Module):
    def __init__(self, kind: str, backbone: nn.Module, num_classes: int, image_size: int, channels: int = 256,
                 low_channels: int = 48):
        super().__init__()
        if kind not in SEGMENTERS:
            raise ValueError(f"segmenter={kind!r} is not allowed; choose one of {list(SEGMENTERS)}")
        stages = stage_names(backbone)
        if "layer4" in stages:
            dilate_last_stage(backbone)
        stage_channels, strides = stage_geometry(backbone, stages, image_size)
        low = next(i for i, stride in enumerate(strides) if stride >= 2 or i == len(strides) - 1)
        self.plus = kind == "deeplabv3plus"
        self.body = IntermediateLayerGetter(backbone, {stages[-1]: "out", stages[low]: "low"})
        self.aspp = ASPP(stage_channels[-1], aspp_rates(image_size // strides[-1]), channels)
        if self.plus:
            self.project_low = _conv_bn_relu(stage_channels[low], low_channels, 1)
            self.decoder = nn.Sequential(_conv_bn_relu(channels + low_channels, channels, 3),
                                         _conv_bn_relu(channels, channels, 3))
        else:
            self.decoder = _conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images)
        x = self.aspp(features["out"])
        if self.plus:
            low = self.project_low(features["low"])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, low], dim=1)
        logits = self.classifier(self.decoder(x))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, C, H, W)
