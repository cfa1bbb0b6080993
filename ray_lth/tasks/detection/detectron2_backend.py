"""detectron2's Faster R-CNN R50-FPN (its model-zoo config) around the pruned backbone.

detectron2 is optional: it has no installable distribution on the package registry here, so
users build it from its source (``pip install --no-build-isolation -e <detectron2 checkout>``,
with ``setuptools<81`` at run time). The model comes from detectron2's own config and model zoo;
the backbone's convolutions *are* the pruned backbone's parameters (the same tensors), mapped
from torchvision names onto detectron2's (``conv1`` -> ``stem.conv1``, ``layer1.0.conv1`` ->
``res2.0.conv1``, ``downsample.0`` -> ``shortcut``), and its frozen batch norms take the
backbone's statistics. Training runs in ray_lth's masked loop rather than detectron2's
``SimpleTrainer``, whose ``run_step`` has no point between backward and step where pruned
gradients can be zeroed (which keeps pruned weights and their momentum at zero); predictions
are scored by the same COCO AP code as the torchvision detectors, so both backends compare.
"""

import re
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

MODEL_ZOO_CONFIG = "COCO-Detection/faster_rcnn_R_{depth}_FPN_3x.yaml"
_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


def detectron2_available() -> bool:
    try:
        import detectron2  # noqa: F401
        from detectron2.modeling import build_model  # noqa: F401
    except ImportError:
        return False
    return True


def torchvision_to_detectron2_key(key: str) -> Optional[str]:
    """detectron2's ResNet name of a torchvision ResNet state-dict key (None: no counterpart,
    i.e. the classifier ``fc`` and BN's ``num_batches_tracked``)."""
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
        return None
    if key.startswith("conv1."):
        return "stem.conv1." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1."):]
    match = re.fullmatch(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\.(\w+)", key)
    if match is None:
        raise ValueError(f"{key!r} is not a torchvision ResNet key")
    stage, block, module, leaf = match.groups()
    module = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(module, module)
    module = re.sub(r"bn(\d)", r"conv\1.norm", module)
    return f"res{int(stage) + 1}.{block}.{module}.{leaf}"


def map_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A torchvision-style θ_p state dict renamed for detectron2's ResNet (``bottom_up``)."""
    mapped = {torchvision_to_detectron2_key(k): v for k, v in state.items()}
    return {k: v for k, v in mapped.items() if k is not None}


def _depth(backbone: nn.Module) -> int:
    blocks = tuple(len(getattr(backbone, f"layer{i}", ())) for i in range(1, 5))
    if blocks not in _DEPTHS or type(backbone.layer1[0]).__name__ != "Bottleneck":
        raise ValueError(f"detector='detectron2' needs a torchvision ResNet-50/101/152 backbone (model=resnet50 or "
                         f"resnet152); got {type(backbone).__name__} with blocks {blocks}")
    return _DEPTHS[blocks]


@torch.no_grad()
def share_backbone(bottom_up: nn.Module, backbone: nn.Module) -> List[str]:
    """Make detectron2's ResNet use ``backbone``'s conv weights (the same Parameter objects) and
    its batch-norm values; returns the detectron2 names that were bound."""
    targets = dict(bottom_up.named_modules())
    bound = []
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            target = targets[torchvision_to_detectron2_key(name + ".weight")[: -len(".weight")]]
            if target.weight.shape != module.weight.shape:
                raise ValueError(f"{name}: shape {tuple(module.weight.shape)} != detectron2's {tuple(target.weight.shape)}")
            target.weight = module.weight
            bound.append(name)
        elif isinstance(module, nn.BatchNorm2d):
            norm = targets[torchvision_to_detectron2_key(name + ".weight")[: -len(".weight")]]
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, leaf).copy_(getattr(module, leaf))
            norm.eps = module.eps
    return bound


class Detectron2Detector(nn.Module):
    """Speaks torchvision's detection interface (lists of images in [0, 1] and target dicts;
    labels 1..K) to a detectron2 GeneralizedRCNN (dicts of 0-255 images; classes 0..K-1),
    resizing each image so its shorter side is ``image_size`` (detectron2 leaves resizing to its
    data mapper) and mapping predictions back to the input's pixels."""

    def __init__(self, model: nn.Module, image_size: int, max_size: int):
        super().__init__()
        self.model = model
        self.image_size, self.max_size = image_size, max_size

    def _inputs(self, images, targets=None):
        from detectron2.structures import Boxes, Instances

        inputs = []
        for index, image in enumerate(images):
            height, width = image.shape[-2:]
            scale = min(self.image_size / min(height, width), self.max_size / max(height, width))
            size = (round(height * scale), round(width * scale))
            resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0] * 255.0
            entry = {"image": resized, "height": height, "width": width}
            if targets is not None:
                instances = Instances(size)
                instances.gt_boxes = Boxes(targets[index]["boxes"] * torch.tensor(
                    [size[1] / width, size[0] / height] * 2, device=image.device))
                instances.gt_classes = targets[index]["labels"] - 1
                entry["instances"] = instances
            inputs.append(entry)
        return inputs

    def forward(self, images, targets=None):
        if self.training:
            from detectron2.utils.events import EventStorage

            with EventStorage():  # detectron2's heads log training statistics into one
                return self.model(self._inputs(images, targets))
        outputs = self.model(self._inputs(images))
        return [{"boxes": out["instances"].pred_boxes.tensor, "scores": out["instances"].scores,
                 "labels": out["instances"].pred_classes + 1} for out in outputs]


def build_detectron2_detector(backbone: nn.Module, settings) -> nn.Module:
    if not detectron2_available():
        raise ImportError("detector='detectron2' needs detectron2, which has no package on the registry: build it "
                          "from its source (pip install --no-build-isolation -e <detectron2 checkout>) and install "
                          "'setuptools<81'; or choose detector='faster_rcnn' (torchvision)")
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    depth = _depth(backbone)
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(MODEL_ZOO_CONFIG.format(depth=depth)))
    cfg.MODEL.DEVICE = str(next(backbone.parameters()).device)
    cfg.MODEL.WEIGHTS = ""  # θ_p comes from the pruned backbone, never from a download
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision strides in the 3x3 conv, MSRA's in the 1x1
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # every stage of the ticket fine-tunes (its norms stay frozen)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = settings.num_classes
    cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.PIXEL_MEAN = [255.0 * m for m in settings.image_mean]
    cfg.MODEL.PIXEL_STD = [255.0 * s for s in settings.image_std]
    model = build_model(cfg)
    share_backbone(model.backbone.bottom_up, backbone)
    return Detectron2Detector(model, settings.image_size, settings.max_size)
