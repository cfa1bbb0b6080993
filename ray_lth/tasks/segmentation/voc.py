"""Pascal VOC 2012 segmentation, train and val; label 255 (object borders, void) is ignored.
Validation labels stay at their native resolution, where the mIoU is scored (as DeepLab scores VOC).
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..voc import VOC_CLASSES, open_voc_part

VOC_SEGMENTATION_CLASSES = len(VOC_CLASSES) + 1  # with the background, class 0


def segmentation_files() -> list:
    return [f"VOCdevkit/VOC2012/{part}" for part in ("ImageSets/Segmentation/train.txt",
                                                     "ImageSets/Segmentation/val.txt", "JPEGImages/",
                                                     "SegmentationClass/")]


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
    part = open_voc_part(tv_datasets.VOCSegmentation, root, "2012", "train" if train else "val", "segmentation")
    return VOCSegmentationSet(part, train, crop_size)
