"""Classification datasets: embedded ones generated in memory, real ones from a local folder.

Real datasets go through torchvision's dataset classes with ``download=False``: this project
never downloads data; a missing dataset raises an error naming the folder and files expected.
"""

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from .shapes import SHAPE_NAMES, make_camouflaged_shapes, make_gratings, make_shapes

# (mean, std) per channel, used to normalise the inputs of each dataset
_CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
EMBEDDED_STATS = ((0.5,) * 3, (0.25,) * 3)  # _normalise's: what the embedded θ_p was trained with


class DatasetMissingError(FileNotFoundError):
    """A real dataset is not where the user pointed; the message says what is expected."""


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - EMBEDDED_STATS[0][0]) / EMBEDDED_STATS[1][0]


def embedded_shapes(train: bool, image_size: int = 16, n_train: int = 4000, n_test: int = 1000) -> Tuple[Dataset, int]:
    """The procedural shapes set (8 classes); train and test come from different seeds."""
    images, labels = make_shapes(n_train if train else n_test, image_size, seed=0 if train else 1)
    return TensorDataset(_normalise(torch.from_numpy(images)), torch.from_numpy(labels)), len(SHAPE_NAMES)


def embedded_camouflaged_shapes(train: bool, image_size: int = 16, n_train: int = 4000,
                                n_test: int = 1000) -> Tuple[Dataset, int]:
    """The shapes at low contrast on random backgrounds (8 classes): the embedded default's task.
    1000 test images, so one image is 0.1 pp; seeds differ from the pre-training set's."""
    images, labels = make_camouflaged_shapes(n_train if train else n_test, image_size, seed=10 if train else 11)
    return TensorDataset(_normalise(torch.from_numpy(images)), torch.from_numpy(labels)), len(SHAPE_NAMES)


def embedded_gratings(train: bool, image_size: int = 16, n_train: int = 2000, n_test: int = 500) -> Tuple[Dataset, int]:
    """Procedural oriented gratings (10 orientation classes); train and test from different seeds."""
    images, labels = make_gratings(n_train if train else n_test, image_size, seed=2 if train else 3)
    return TensorDataset(_normalise(torch.from_numpy(images)), torch.from_numpy(labels)), 10


def embedded_digits(train: bool, image_size: int = 16) -> Tuple[Dataset, int]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, shipped with the package),
    upscaled to ``image_size`` and repeated over 3 channels; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits  # ships its data; no download

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    images = torch.nn.functional.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    images = _normalise(images.clamp(0, 1).repeat(1, 3, 1, 1))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(labels))
    index = order[:cut] if train else order[cut:]
    return TensorDataset(images[index], labels[index]), 10


def _cifar_transform(train: bool, stats) -> v2.Compose:
    steps = [v2.ToImage()]
    if train:
        steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(*stats)]
    return v2.Compose(steps)


def _real(name: str, root: Path, expected: str, build: Callable[[], Dataset], num_classes: int) -> Tuple[Dataset, int]:
    try:
        return build(), num_classes
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise DatasetMissingError(
            f"{name} not found under --data-root {root}: expected {expected} "
            f"(ray_lth never downloads data; place the files there). Cause: {error}"
        ) from None


def cifar10(root: Path, train: bool):
    return _real("CIFAR-10", root, "cifar-10-batches-py/ with data_batch_1..5 and test_batch",
                 lambda: tv_datasets.CIFAR10(root, train=train, download=False, transform=_cifar_transform(train, _CIFAR_STATS)), 10)


def cifar100(root: Path, train: bool):
    return _real("CIFAR-100", root, "cifar-100-python/ with train and test",
                 lambda: tv_datasets.CIFAR100(root, train=train, download=False, transform=_cifar_transform(train, _CIFAR_STATS)), 100)


def svhn(root: Path, train: bool):
    split = "train" if train else "test"
    return _real("SVHN", root, f"{split}_32x32.mat",
                 lambda: tv_datasets.SVHN(root, split=split, download=False, transform=_cifar_transform(False, _CIFAR_STATS)), 10)


def fashion_mnist(root: Path, train: bool):
    transform = v2.Compose([v2.ToImage(), v2.Grayscale(3), v2.Resize(32), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((0.5,) * 3, (0.5,) * 3)])
    return _real("Fashion-MNIST", root, "FashionMNIST/raw/ with the four *-ubyte files",
                 lambda: tv_datasets.FashionMNIST(root, train=train, download=False, transform=transform), 10)


def visda2017(root: Path, train: bool):
    split = "train" if train else "validation"
    folder = root / "visda2017" / split
    steps = [v2.ToImage(), v2.RandomResizedCrop(224) if train else v2.Resize(256)]
    steps += [v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(224)]
    transform = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(*IMAGENET_STATS)])
    return _real("VisDA2017", root, f"visda2017/{split}/<class>/<image> (an ImageFolder layout, 12 classes)",
                 lambda: tv_datasets.ImageFolder(folder, transform=transform), 12)


EMBEDDED: Dict[str, Callable] = {"shapes": embedded_shapes, "digits": embedded_digits, "gratings": embedded_gratings,
                                  "camo_shapes": embedded_camouflaged_shapes}
REAL: Dict[str, Callable] = {
    "cifar10": cifar10, "cifar100": cifar100, "svhn": svhn, "fashion_mnist": fashion_mnist, "visda2017": visda2017,
}


def load_classification_dataset(name: str, train: bool, data_root: Optional[str] = None, image_size: int = 16):
    """(dataset, num_classes) for ``name``: embedded sets ignore ``data_root``; real ones need it."""
    if name in EMBEDDED:
        return EMBEDDED[name](train, image_size=image_size)
    if name in REAL:
        if not data_root:
            raise DatasetMissingError(f"task {name!r} reads a local dataset: pass --data-root (nothing is downloaded)")
        return REAL[name](Path(data_root), train)
    raise ValueError(f"No such classification dataset: {name!r}; choose one of {sorted(EMBEDDED) + sorted(REAL)}")
