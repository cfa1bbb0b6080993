"""torchvision detectors around the pruned backbone: Faster R-CNN (two-stage) and RetinaNet
(one-stage, standing in for YOLOv4, which no maintained library ships on a ResNet-50).

Both read the backbone's stages through an FPN (``BackboneWithFPN``, sharing the backbone's
modules); the FPN, RPN, box heads and classifiers are new and dense (paper, section 3). Anchor
sizes follow each level's stride (8 x stride: 32 px at stride 4, torchvision's own choice for
ResNet-50), so the same code serves ResNet-50 on VOC and a CIFAR ResNet on 48-px scenes.
"""

from dataclasses import dataclass
from functools import partial
from typing import Tuple

from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ..backbone_features import FrozenNormWrapper, stage_geometry, stage_names

DETECTORS = ("faster_rcnn", "retinanet")


@dataclass(frozen=True)
class DetectorSettings:
    num_classes: int  # foreground classes; labels are 1..num_classes, 0 is the background
    image_size: int  # images are resized so that their shorter side is this (and longer <= max_size)
    max_size: int
    image_mean: Tuple[float, float, float]
    image_std: Tuple[float, float, float]
    fpn_channels: int = 256
    box_head_dim: int = 1024  # Faster R-CNN's two-MLP box head
    # proposals kept before/after NMS (training, testing) and RoIs sampled an image: torchvision's
    # defaults suit 800-px images with many objects; scenes of three shapes need far fewer
    proposals: Tuple[int, int, int, int] = (2000, 2000, 1000, 1000)
    rois_per_image: int = 512
    detections_per_image: int = 100


def build_detector(kind: str, backbone: nn.Module, settings: DetectorSettings) -> nn.Module:
    """A detector whose backbone is ``backbone`` itself (shared parameters, batch norms frozen).

    Training: ``model(images, targets) -> {loss name: loss}``; evaluation: ``model(images) ->
    [{"boxes", "labels", "scores"}]`` in the input images' pixel coordinates."""
    if kind not in DETECTORS:
        raise ValueError(f"detector={kind!r} is not allowed; choose one of {list(DETECTORS)}")
    stages = stage_names(backbone)
    channels, strides = stage_geometry(backbone, stages, settings.image_size)
    # a full-resolution stage (a CIFAR ResNet's layer1) would make the FPN cost most of a step
    # for objects no smaller than 8 px; ResNet-50's stages all have stride >= 4 and all stay
    used = [i for i, stride in enumerate(strides) if stride >= 2]
    stages, channels, strides = ([seq[i] for i in used] for seq in (stages, channels, strides))
    common = dict(min_size=settings.image_size, max_size=settings.max_size, image_mean=list(settings.image_mean),
                  image_std=list(settings.image_std))
    if kind == "faster_rcnn":
        body = BackboneWithFPN(backbone, {s: str(i) for i, s in enumerate(stages)}, channels,
                               settings.fpn_channels, extra_blocks=LastLevelMaxPool())
        level_strides = strides + [2 * strides[-1]]
        anchors = AnchorGenerator(tuple((8 * s,) for s in level_strides), ((0.5, 1.0, 2.0),) * len(level_strides))
        pool = MultiScaleRoIAlign([str(i) for i in range(len(stages))], output_size=7, sampling_ratio=2)
        head = TwoMLPHead(settings.fpn_channels * 7 * 7, settings.box_head_dim)
        pre_train, post_train, pre_test, post_test = settings.proposals
        detector = FasterRCNN(body, rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head,
                              box_predictor=FastRCNNPredictor(settings.box_head_dim, settings.num_classes + 1),
                              rpn_pre_nms_top_n_train=pre_train, rpn_post_nms_top_n_train=post_train,
                              rpn_pre_nms_top_n_test=pre_test, rpn_post_nms_top_n_test=post_test,
                              box_batch_size_per_image=settings.rois_per_image,
                              box_detections_per_img=settings.detections_per_image, **common)
    else:
        # RetinaNet reads the last three stages (C3-C5) and adds P6, P7 from P5
        used = stages[-3:]
        body = BackboneWithFPN(backbone, {s: str(i) for i, s in enumerate(used)}, channels[-len(used):],
                               settings.fpn_channels,
                               extra_blocks=LastLevelP6P7(settings.fpn_channels, settings.fpn_channels))
        level_strides = strides[-len(used):] + [2 * strides[-1], 4 * strides[-1]]
        # three scales an octave apart per level, three aspect ratios (Lin et al. 2017)
        sizes = tuple(tuple(8 * s * 2 ** (k / 3) for k in range(3)) for s in level_strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        # GroupNorm in the head, as torchvision's RetinaNet v2: without it the classification
        # subnet's ReLUs can die in the first steps and every score stays at the 0.01 prior
        head = RetinaNetHead(settings.fpn_channels, anchors.num_anchors_per_location()[0], settings.num_classes + 1,
                             norm_layer=partial(nn.GroupNorm, 32))
        detector = RetinaNet(body, settings.num_classes + 1, anchor_generator=anchors, head=head,
                             detections_per_img=settings.detections_per_image, **common)
    return FrozenNormWrapper(detector, backbone)
