"""Object detection as an IMP task: a detector is built around the pruned backbone each round
(``wrap``), trained on the summed detector losses and scored by COCO-style AP (AP50, AP75 too).

Tasks: ``detection_shapes`` (embedded scenes of shapes, 4 classes, 48 px) and ``voc_detection``
(Pascal VOC07+12 from ``--data-root``). Options: ``detector`` (torchvision's ``faster_rcnn`` or
``retinanet``, or ``detectron2``: detectron2's Faster R-CNN R50-FPN, when it is installed).
"""

from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...device import autocast
from ..datasets import EMBEDDED_STATS, IMAGENET_STATS, DatasetMissingError
from ..loading import Loading
from ..scenes import SceneDetection, check_scene_counts, make_scenes
from ..voc import VOC_CLASSES
from .detectors import DETECTORS, DetectorSettings, build_detector
from .metrics import coco_ap
from .voc import voc_detection

DETECTOR_CHOICES = DETECTORS + ("detectron2",)


def check_detection_options(options: Dict) -> None:
    if options["detector"] not in DETECTOR_CHOICES:
        raise ValueError(f"detector={options['detector']!r} is not allowed; choose one of {list(DETECTOR_CHOICES)}")
    check_scene_counts(options)


def _collate(batch):
    return tuple(zip(*batch))  # detectors take lists: images differ in size


class DetectionTask:
    metric = "AP"
    heads = ("detector neck and heads",)  # FPN, RPN (or RetinaNet's head), box head: new, dense

    def __init__(self, name: str, train_set, test_set, num_classes: int, detector: str, settings: DetectorSettings,
                 loading: Loading = Loading()):
        if detector not in DETECTOR_CHOICES:
            raise ValueError(f"detector={detector!r} is not allowed; choose one of {list(DETECTOR_CHOICES)}")
        self.name, self.train_set, self.test_set = name, train_set, test_set
        self.num_classes = num_classes
        self.num_outputs = num_classes  # the backbone's own classifier is unused
        self.detector, self.settings, self.loading = detector, settings, loading

    def wrap(self, backbone: nn.Module, spec) -> nn.Module:
        if self.detector == "detectron2":
            from .detectron2_backend import build_detectron2_detector

            return build_detectron2_detector(backbone, self.settings)
        return build_detector(self.detector, backbone, self.settings)

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train_set) // batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        return DataLoader(self.train_set, batch_size=batch_size, shuffle=True, generator=generator,
                          collate_fn=_collate, **self.loading.options(reused=False))

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device) for k, v in t.items() if k in ("boxes", "labels")} for t in targets]
        return sum(model(images, targets).values())

    @torch.no_grad()
    def predict(self, model: nn.Module, device: torch.device, batch_size: int = 8):
        model.eval()
        predictions, targets = [], []
        for images, batch_targets in DataLoader(self.test_set, batch_size=batch_size, collate_fn=_collate,
                                                **self.loading.options(reused=False)):
            with autocast(device, self.loading.precision):
                outputs = model([image.to(device) for image in images])
            predictions += [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in out.items()}
                            for out in outputs]
            targets += batch_targets
        return predictions, targets

    def evaluate(self, model: nn.Module, device: torch.device) -> Dict[str, float]:
        predictions, targets = self.predict(model, device)
        return coco_ap(predictions, targets, self.num_classes)


def _check_size(name: str, image_size: int, smallest: int) -> None:
    if image_size < smallest:
        raise ValueError(f"task {name!r} needs image_size >= {smallest} (the shorter side its detector sees), "
                         f"got {image_size}: set image_size")


def detection_shapes(name, data_root, image_size, loading, detector="faster_rcnn", scenes_train=512,
                     scenes_test=128):
    _check_size(name, image_size, 32)
    train = SceneDetection(make_scenes(scenes_train, image_size, seed=10))
    test = SceneDetection(make_scenes(scenes_test, image_size, seed=11))
    # a small FPN and box head: the stand-in's backbone is a CIFAR ResNet, not a ResNet-50
    settings = DetectorSettings(num_classes=4, image_size=image_size, max_size=image_size,
                                image_mean=EMBEDDED_STATS[0], image_std=EMBEDDED_STATS[1], fpn_channels=64,
                                box_head_dim=256, proposals=(300, 150, 150, 100), rois_per_image=64,
                                detections_per_image=20)
    return DetectionTask(name, train, test, 4, detector, settings, loading)


def voc_detection_task(name, data_root: Optional[str], image_size, loading, detector="faster_rcnn"):
    if not data_root:
        raise DatasetMissingError(f"task {name!r} reads Pascal VOC: pass --data-root (nothing is downloaded)")
    _check_size(name, image_size, 128)
    settings = DetectorSettings(num_classes=len(VOC_CLASSES), image_size=image_size,
                                max_size=round(image_size * 5 / 3), image_mean=IMAGENET_STATS[0],
                                image_std=IMAGENET_STATS[1])
    return DetectionTask(name, voc_detection(Path(data_root), True), voc_detection(Path(data_root), False),
                         len(VOC_CLASSES), detector, settings, loading)

