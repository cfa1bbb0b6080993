"""Supervised image classification: cross-entropy training, top-1 accuracy; optionally a
validation set held out of the training images (``val_images``), for best-validation epoch selection.
Registers one task per dataset (``datasets.EMBEDDED`` and ``datasets.REAL``).

A real dataset's loader yields uint8 images (decoded and augmented in the loader's workers);
``inputs`` scales and normalises them where the model runs (``datasets.DeviceInputs``). The
loaders follow ``loading`` (``loading.py``): with persistent workers, each loader is kept while
it is iterated again (the next epoch, the next evaluation) so that its workers are not re-forked.
"""

from typing import Any, Callable, Dict, Optional

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, Subset, TensorDataset

from ..device import autocast, to_device_format
from .datasets import (EMBEDDED, NORMALIZATIONS, REAL, device_inputs, load_classification_dataset,
                       required_files)
from .loading import Loading
from .registry import register_task
from .validation_split import VAL_IMAGES, split_validation


class ClassificationTask:
    metric = "top1"

    def __init__(self, name: str, train_set: Dataset, test_set: Dataset, num_classes: int,
                 loading: Loading = Loading(), val_set: Optional[Dataset] = None,
                 inputs: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.name = name
        self.train_set = train_set
        self.test_set = test_set
        self.val_set = val_set
        self.num_outputs = num_classes
        self.loading = loading
        self.inputs = inputs  # on the device: a batch as loaded -> the model's input (None: as it is)
        self._loaders: Dict[str, tuple] = {}  # role -> (batch size, generator or dataset, loader)

    @classmethod
    def from_name(cls, name: str, data_root: Optional[str] = None, image_size: int = 16,
                  loading: Loading = Loading(), val_images: Optional[int] = None, normalize: str = "dataset"):
        """``val_images`` training images held out as the validation set (None: none held out);
        ``normalize``: a real dataset's option (datasets.NORMALIZATIONS)."""
        inputs = device_inputs(name, normalize)
        train_set, num_classes = load_classification_dataset(name, True, data_root, image_size)
        test_set, test_classes = load_classification_dataset(name, False, data_root, image_size)
        if test_classes != num_classes:
            raise ValueError(f"{name}: the training split has {num_classes} classes, the test split {test_classes}; "
                             f"both must hold the same class folders")
        val_set = None
        if val_images is not None:
            train_set, val_set = split_validation(train_set, test_set, val_images)
        return cls(name, train_set, test_set, num_classes, loading, val_set, inputs)

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train_set) // batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator, shard=None):
        """One shuffled epoch; ``shard`` (a data-parallel rank's, ``distributed.DataParallel.shard_batches``)
        keeps the rank's share of each batch, the batches being drawn as without it."""
        # what DataLoader(shuffle=True) builds, spelled out: a rank's share is cut from it, and
        # tensors in memory are gathered a batch at a time (_batch_loader); the same draws either way
        batches = BatchSampler(RandomSampler(self.train_set, generator=generator), batch_size, drop_last=False)
        if shard is None:
            return self._loader("train", batch_size, generator,
                                lambda: self._batch_loader(self.train_set, batches, generator))
        return self._batch_loader(self.train_set, shard(batches), generator)

    def model_inputs(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """A batch as loaded -> the model's input on ``device``."""
        images = images.to(device, non_blocking=True)
        if self.inputs is not None:
            images = self.inputs(images)
        return to_device_format(images, device, self.loading.precision)

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        images, labels = batch
        return nn.functional.cross_entropy(model(self.model_inputs(images, device)),
                                           labels.to(device, non_blocking=True))

    def evaluate(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> Dict[str, float]:
        return self._score("test", self.test_set, model, device, batch_size)

    def evaluate_validation(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> Dict[str, float]:
        if self.val_set is None:
            raise ValueError(f"task {self.name!r} was built without a validation set: give val_images")
        return self._score("val", self.val_set, model, device, batch_size)

    def _loader(self, role: str, batch_size: int, source, make: Callable[[], DataLoader]) -> DataLoader:
        """``make()``, or the loader made before for the same role, batch size and generator (or
        dataset) where its workers persist."""
        if not self.loading.persistent_workers:
            return make()
        held = self._loaders.get(role)
        if held is None or held[0] != batch_size or held[1] is not source:
            held = (batch_size, source, make())  # a new round's generator: its workers replace the old
            self._loaders[role] = held
        return held[2]

    def _batch_loader(self, dataset: Dataset, batches, generator: Optional[torch.Generator] = None) -> DataLoader:
        """A DataLoader over the index lists ``batches`` yields (a batch sampler). Tensors in memory
        (the embedded sets) are indexed by a whole batch at once, one gather per tensor instead of
        an item at a time stacked: the same batches, bit for bit, at a fraction of the cost. Either
        way the loader draws its seed from ``generator`` (None: the global RNG) as it always did."""
        if _holds_tensors(dataset):
            return DataLoader(dataset, sampler=batches, batch_size=None, generator=generator, **self.loading.options())
        return DataLoader(dataset, batch_sampler=batches, generator=generator, **self.loading.options())

    @torch.inference_mode()
    def _score(self, role: str, dataset: Dataset, model: nn.Module, device: torch.device,
               batch_size: int) -> Dict[str, float]:
        model.eval()
        correct, total, loss_sum = 0, 0, 0.0
        loader = self._loader(role, batch_size, dataset, lambda: self._batch_loader(
            dataset, BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)))
        for images, labels in loader:
            images, labels = self.model_inputs(images, device), labels.to(device, non_blocking=True)
            with autocast(device, self.loading.precision):
                logits = model(images).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.numel()
        return {"top1": correct / total, "test_loss": loss_sum / total}


def _holds_tensors(dataset: Dataset) -> bool:
    """A TensorDataset, or a Subset of one (a validation split): indexable by a list of indices."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, TensorDataset)


def _classification(name, data_root, image_size, loading, val_images=None, **options):
    return ClassificationTask.from_name(name, data_root, image_size, loading, val_images, **options)


def _check_normalize(options: Dict[str, Any]) -> None:
    if options["normalize"] not in NORMALIZATIONS:
        raise ValueError(f"normalize={options['normalize']!r} is not allowed; choose one of {list(NORMALIZATIONS)} "
                         f"(dataset: the dataset's own mean/std; none: [0, 1] pixels, for converted simCLR "
                         f"checkpoints)")


CLASSIFICATION_TASKS = tuple(sorted(EMBEDDED) + sorted(REAL))
# the paper's datasets report the test accuracy of the best-validation epoch, as the authors do;
# the embedded sets keep the last epoch. VisDA-2017 too: the authors pick its best epoch on the
# real-image domain they also test on, which has no counterpart here (best_val holds out synthetic images)
_BEST_VAL_BY_DEFAULT = ("cifar10", "cifar100", "svhn", "fashion_mnist")
for _name in sorted(EMBEDDED):
    register_task(_name, _classification, val_images=VAL_IMAGES[_name])
for _name in sorted(set(REAL) - {"imagenet"}):
    register_task(_name, _classification, options={"normalize": "dataset"}, check=_check_normalize,
                  selection="best_val" if _name in _BEST_VAL_BY_DEFAULT else "last", val_images=VAL_IMAGES[_name],
                  data_files=lambda options, name=_name: required_files(name))
# supervised ImageNet classification is θ_Img's own pre-training task (m_Img, Figure 2): its head
# is the file's fc, round 0 scores θ_p untrained, and rounds train with Table 1's ImageNet row and
# report their best epoch on ImageNet's val set (its only labelled held-out set), as main_imp_imagenet.py
register_task("imagenet", _classification, options={"normalize": "dataset"}, check=_check_normalize,
              schedule="imagenet", selection="best_test", weights_trained_on_it=True,
              data_files=lambda options: required_files("imagenet"))
