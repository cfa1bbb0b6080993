"""Pascal VOC from ``--data-root`` through torchvision's VOC datasets (never downloaded).

Detection: VOC2007 trainval + VOC2012 trainval to train, VOC2007 test to evaluate (the paper's
VOC07+12 protocol); *difficult* objects are left out of training and ignored by the evaluation.
Segmentation: VOC2012 train and val; label 255 (object borders, void) is ignored. Validation
labels stay at their native resolution, where the mIoU is scored (as DeepLab scores VOC).
"""

from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset
from torchvision import datasets as tv_datasets
from torchvision import tv_tensors
from torchvision.transforms import v2

from .datasets import DatasetMissingError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOC_SEGMENTATION_CLASSES = len(VOC_CLASSES) + 1  # with the background, class 0


def _voc(build, root: Path, year: str, image_set: str, what: str):
    try:
        return build(str(root), year=year, image_set=image_set, download=False)
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise DatasetMissingError(
            f"Pascal VOC{year} {image_set} ({what}) not found under --data-root {root}: expected "
            f"VOCdevkit/VOC{year}/ with JPEGImages/, Annotations/, SegmentationClass/ and ImageSets/ "
            f"(ray_lth never downloads data). Cause: {error}") from None


def _target(annotation: dict) -> dict:
    objects = annotation["annotation"]["object"]
    objects = objects if isinstance(objects, list) else [objects]
    boxes, labels, difficult = [], [], []
    for obj in objects:
        box = obj["bndbox"]
        # VOC pixel indices are 1-based and inclusive: to 0-based corners with exclusive ends
        boxes.append([float(box["xmin"]) - 1, float(box["ymin"]) - 1, float(box["xmax"]), float(box["ymax"])])
        labels.append(VOC_CLASSES.index(obj["name"]) + 1)
        difficult.append(obj.get("difficult", "0") == "1")
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64),
            "ignore": torch.tensor(difficult, dtype=torch.bool)}


class VOCDetectionSet(Dataset):
    """(image (3, H, W) float in [0, 1], target) with boxes in pixels; training flips at random
    and drops difficult objects."""

    def __init__(self, parts, train: bool):
        self.parts = ConcatDataset(parts)
        self.train = train
        self.flip = v2.RandomHorizontalFlip() if train else None

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index: int):
        image, annotation = self.parts[index]
        image = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
        target = _target(annotation)
        if self.train:
            keep = ~target.pop("ignore")
            boxes = tv_tensors.BoundingBoxes(target["boxes"][keep], format="XYXY", canvas_size=image.shape[-2:])
            image, boxes = self.flip(image, boxes)
            target = {"boxes": boxes.as_subclass(torch.Tensor), "labels": target["labels"][keep]}
        return image, target


def detection_files() -> list:
    """What ``voc_detection`` opens under the data root, both splits (for a check before any trial)."""
    return list(dict.fromkeys(f"VOCdevkit/VOC{year}/{part}" for year, split in (("2007", "trainval"), ("2012", "trainval"),
                                                                                 ("2007", "test"))
                              for part in (f"ImageSets/Main/{split}.txt", "JPEGImages/", "Annotations/")))


def segmentation_files() -> list:
    return [f"VOCdevkit/VOC2012/{part}" for part in ("ImageSets/Segmentation/train.txt",
                                                     "ImageSets/Segmentation/val.txt", "JPEGImages/",
                                                     "SegmentationClass/")]


def voc_detection(root: Path, train: bool) -> VOCDetectionSet:
    if train:
        parts = [_voc(tv_datasets.VOCDetection, root, year, "trainval", "detection") for year in ("2007", "2012")]
    else:
        parts = [_voc(tv_datasets.VOCDetection, root, "2007", "test", "detection")]
    return VOCDetectionSet(parts, train)


class VOCSegmentationSet(Dataset):
    """(image (3, H, W) float in [0, 1], labels (H', W') int64): training takes a random resized
    crop of ``crop_size`` of both and flips; evaluation resizes the image's shorter side to
    ``crop_size`` (the scale the network trained at) and leaves the labels at their native size:
    the task upsamples the logits to them, so the mIoU counts the dataset's own pixels."""

    def __init__(self, part, train: bool, crop_size: int):
        self.part, self.train = part, train
        resize = [v2.RandomResizedCrop(crop_size, scale=(0.25, 1.0)), v2.RandomHorizontalFlip()] if train \
            else [v2.Resize(crop_size)]
        self.transform = v2.Compose([v2.ToImage(), *resize, v2.ToDtype({tv_tensors.Image: torch.float32,
                                                                        "others": None}, scale=True)])

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, index: int):
        image, labels = self.part[index]
        labels = tv_tensors.Mask(v2.functional.pil_to_tensor(labels)[0])
        if self.train:
            image, labels = self.transform(image, labels)
        else:
            image = self.transform(image)
        return image.as_subclass(torch.Tensor), labels.as_subclass(torch.Tensor).long()


def voc_segmentation(root: Path, train: bool, crop_size: int) -> VOCSegmentationSet:
    part = _voc(tv_datasets.VOCSegmentation, root, "2012", "train" if train else "val", "segmentation")
    return VOCSegmentationSet(part, train, crop_size)
