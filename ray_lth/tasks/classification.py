"""Supervised image classification: cross-entropy training, top-1 accuracy; optionally a
validation set held out of the training images (``val_images``), for best-validation epoch selection."""

from typing import Dict, Optional

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from ..device import autocast, to_device_format
from .datasets import load_classification_dataset
from .validation_split import split_validation


class ClassificationTask:
    metric = "top1"

    def __init__(self, name: str, train_set: Dataset, test_set: Dataset, num_classes: int, num_workers: int = 0,
                 val_set: Optional[Dataset] = None):
        self.name = name
        self.train_set = train_set
        self.test_set = test_set
        self.val_set = val_set
        self.num_outputs = num_classes
        self.num_workers = num_workers

    @classmethod
    def from_name(cls, name: str, data_root: Optional[str] = None, image_size: int = 16, num_workers: int = 0,
                  val_images: Optional[int] = None, **options):
        """``val_images`` training images held out as the validation set (None: none held out);
        ``options``: a real dataset's ``normalize`` (datasets.NORMALIZATIONS)."""
        train_set, num_classes = load_classification_dataset(name, True, data_root, image_size, **options)
        test_set, test_classes = load_classification_dataset(name, False, data_root, image_size, **options)
        if test_classes != num_classes:
            raise ValueError(f"{name}: the training split has {num_classes} classes, the test split {test_classes}; "
                             f"both must hold the same class folders")
        val_set = None
        if val_images is not None:
            train_set, val_set = split_validation(train_set, test_set, val_images)
        return cls(name, train_set, test_set, num_classes, num_workers, val_set)

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train_set) // batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator, shard=None):
        """One shuffled epoch; ``shard`` (a data-parallel rank's, ``distributed.DataParallel.shard_batches``)
        keeps the rank's share of each batch, the batches being drawn as without it."""
        if shard is None:
            return DataLoader(self.train_set, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=self.num_workers, drop_last=False)
        # what DataLoader(shuffle=True) builds, spelled out so that the rank's share can be cut from it
        batches = BatchSampler(RandomSampler(self.train_set, generator=generator), batch_size, drop_last=False)
        return DataLoader(self.train_set, batch_sampler=shard(batches), generator=generator,
                          num_workers=self.num_workers)

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        images, labels = (t.to(device, non_blocking=True) for t in batch)
        return nn.functional.cross_entropy(model(to_device_format(images, device)), labels)

    def evaluate(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> Dict[str, float]:
        return self._score(self.test_set, model, device, batch_size)

    def evaluate_validation(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> Dict[str, float]:
        if self.val_set is None:
            raise ValueError(f"task {self.name!r} was built without a validation set: give val_images")
        return self._score(self.val_set, model, device, batch_size)

    @torch.no_grad()
    def _score(self, dataset: Dataset, model: nn.Module, device: torch.device, batch_size: int) -> Dict[str, float]:
        model.eval()
        correct, total, loss_sum = 0, 0, 0.0
        for images, labels in DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers):
            images, labels = images.to(device), labels.to(device)
            with autocast(device):
                logits = model(to_device_format(images, device)).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.numel()
        return {"top1": correct / total, "test_loss": loss_sum / total}

