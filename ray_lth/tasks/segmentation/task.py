"""Semantic segmentation as an IMP task: DeepLabv3+ (or v3) built around the pruned backbone
each round (``wrap``), trained with pixel-wise cross-entropy and scored by mIoU.

Tasks: ``segmentation_shapes`` (embedded scenes of shapes: background + 4 classes, 48 px) and
``voc_segmentation`` (Pascal VOC 2012 train/val from ``--data-root``, 21 classes; scored at the
labels' native resolution, the logits upsampled to it).
"""

from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ...device import autocast, to_device_format
from ..datasets import EMBEDDED_STATS, IMAGENET_STATS, DatasetMissingError
from ..loading import Loading
from ..scenes import SceneSegmentation, check_scene_counts, make_scenes
from .metrics import IGNORE_INDEX, confusion_matrix, segmentation_scores
from .segmenters import SEGMENTERS, DeepLab
from .voc import VOC_SEGMENTATION_CLASSES, voc_segmentation



def check_segmentation_options(options: Dict) -> None:
    if options["segmenter"] not in SEGMENTERS:
        raise ValueError(f"segmenter={options['segmenter']!r} is not allowed; choose one of {list(SEGMENTERS)}")
    check_scene_counts(options)


class _Normalised(nn.Module):
    """Takes images in [0, 1], as the datasets give them, and normalises them as θ_p expects."""

    def __init__(self, model: nn.Module, stats):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(stats[0]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(stats[1]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return self.model((images - self.mean) / self.std)


class SegmentationTask:
    metric = "mIoU"
    heads = ("segmenter head",)  # ASPP, decoder, classifier: new, dense

    def __init__(self, name: str, train_set, test_set, num_classes: int, segmenter: str, image_size: int, stats,
                 channels: int, eval_batch_size: int, loading: Loading = Loading()):
        self.name, self.train_set, self.test_set = name, train_set, test_set
        self.num_classes = self.num_outputs = num_classes
        self.segmenter, self.image_size, self.stats, self.channels = segmenter, image_size, stats, channels
        self.eval_batch_size, self.loading = eval_batch_size, loading

    def wrap(self, backbone: nn.Module, spec) -> nn.Module:
        deeplab = DeepLab(self.segmenter, backbone, self.num_classes, self.image_size, channels=self.channels,
                          low_channels=min(48, self.channels))
        return _Normalised(deeplab, self.stats)

    def backbone_parameters(self, model: nn.Module):
        """The pruned backbone's parameters in ``wrap``'s model (DeepLab's body); ASPP, decoder and
        classifier are the head, as the authors' ``model.backbone`` / ``model.classifier`` groups."""
        return model.model.body.parameters()

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train_set) // batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        # drop_last: ASPP's image-pooling branch batch-normalises one value a channel per image
        return DataLoader(self.train_set, batch_size=batch_size, shuffle=True, generator=generator,
                          drop_last=len(self.train_set) > batch_size, **self.loading.options(reused=False))

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        images, labels = (t.to(device, non_blocking=True) for t in batch)
        logits = model(to_device_format(images, device, self.loading.precision))
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> Dict[str, float]:
        model.eval()
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        for images, labels in DataLoader(self.test_set, batch_size=self.eval_batch_size,
                                         **self.loading.options(reused=False)):
            with autocast(device, self.loading.precision):
                logits = model(to_device_format(images.to(device), device, self.loading.precision))
            if logits.shape[-2:] != labels.shape[-2:]:
                # VOC labels keep their native size: upsample the logits to it, never resize the labels
                logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
            confusion += confusion_matrix(logits.argmax(1).cpu(), labels, self.num_classes)
        return segmentation_scores(confusion)


def segmentation_shapes(name, data_root, image_size, loading, segmenter="deeplabv3plus", scenes_train=512,
                        scenes_test=128):
    if image_size < 32:
        raise ValueError(f"task {name!r} needs image_size >= 32, got {image_size}: set image_size")
    train = SceneSegmentation(make_scenes(scenes_train, image_size, seed=20))
    test = SceneSegmentation(make_scenes(scenes_test, image_size, seed=21))
    return SegmentationTask(name, train, test, 5, segmenter, image_size, EMBEDDED_STATS, channels=64,
                            eval_batch_size=64, loading=loading)


def voc_segmentation_task(name, data_root: Optional[str], image_size, loading, segmenter="deeplabv3plus"):
    if not data_root:
        raise DatasetMissingError(f"task {name!r} reads Pascal VOC 2012: pass --data-root (nothing is downloaded)")
    if image_size < 128:
        raise ValueError(f"task {name!r} needs image_size >= 128 (the crop size; DeepLab uses 513), got {image_size}")
    root = Path(data_root)
    # validation images and their native-size labels differ in size: one at a time (batch 1, no padding)
    return SegmentationTask(name, voc_segmentation(root, True, image_size), voc_segmentation(root, False, image_size),
                            VOC_SEGMENTATION_CLASSES, segmenter, image_size, IMAGENET_STATS, channels=256,
                            eval_batch_size=1, loading=loading)
