"""Semantic segmentation scores from a confusion matrix: mIoU and pixel accuracy."""

from typing import Dict

import torch

IGNORE_INDEX = 255  # VOC's object borders and "void": neither right nor wrong


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    keep = target != ignore_index
    if ((target[keep] < 0) | (target[keep] >= num_classes)).any():
        raise ValueError(f"target labels must be in 0..{num_classes - 1} or {ignore_index}")
    index = target[keep].long() * num_classes + predicted[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(confusion: torch.Tensor) -> Dict[str, float]:
    """mIoU over the classes that occur in the target or the prediction (the standard VOC
    evaluation: a class absent from both has no IoU), and pixel accuracy."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    iou = true_positive[present] / union[present]
    total = confusion.sum()
    return {"mIoU": float(iou.mean()) if present.any() else 0.0,
            "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else 0.0}
