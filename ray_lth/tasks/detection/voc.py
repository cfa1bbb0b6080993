"""Pascal VOC detection: VOC2007 trainval + VOC2012 trainval to train, VOC2007 test to evaluate
(the paper's VOC07+12 protocol); *difficult* objects are left out of training and ignored by the
evaluation.
"""

from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset
from torchvision import datasets as tv_datasets
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..voc import VOC_CLASSES, open_voc_part


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


def voc_detection(root: Path, train: bool) -> VOCDetectionSet:
    if train:
        parts = [open_voc_part(tv_datasets.VOCDetection, root, year, "trainval", "detection")
                 for year in ("2007", "2012")]
    else:
        parts = [open_voc_part(tv_datasets.VOCDetection, root, "2007", "test", "detection")]
    return VOCDetectionSet(parts, train)
