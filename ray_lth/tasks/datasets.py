"""Classification datasets: embedded ones generated in memory, real ones from a local folder.

Real datasets are read from their published on-disk formats (torchvision's dataset classes with
``download=False``, or the pickles and .mat files directly): this project never downloads data; a
missing dataset raises an error naming the folder and files expected.
"""

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from .cifar_files import CifarBatches, required_files as cifar_required_files
from .shapes import SHAPE_NAMES, make_camouflaged_shapes, make_gratings, make_shapes

# (mean, std) per channel, used to normalise the inputs of each dataset. The four 32-px sets use
# the authors' values (their dataset.py): CIFAR-10's std is the widely copied (0.2023, 0.1994,
# 0.2010), not the per-pixel (0.2470, 0.2435, 0.2616); Fashion-MNIST's one channel is repeated.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
CIFAR100_STATS = ((0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1201, 0.1231, 0.1052))
FASHION_MNIST_STATS = ((0.1436,) * 3, (0.1609,) * 3)
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


# a real classification task's ``normalize`` option: "dataset" (its own stats, as the authors) or
# "none" (raw [0, 1] pixels, what simCLR checkpoints converted from TensorFlow expect)
NORMALIZATIONS = ("dataset", "none")
Stats = Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]  # None: no normalisation


class DeviceInputs:
    """The last step of a real dataset's transform, run on a batch where the model runs: uint8
    images (as the loader's workers decode and augment them, a quarter of float32's bytes to pin
    and copy) to float in [0, 1], normalised by ``stats`` (None: not normalised). The same
    torchvision functions as the per-image ``ToDtype`` + ``Normalize`` did, element by element,
    so a CPU run's numbers are bit-identical to normalising each image in the loader."""

    def __init__(self, stats: Stats):
        self.stats = stats

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = v2.functional.to_dtype(images, torch.float32, scale=True)
        return v2.functional.normalize(images, *self.stats) if self.stats else images


def _cifar_transform(train: bool) -> v2.Compose:
    steps = [v2.ToImage()]
    if train:
        steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    return v2.Compose(steps)


def _real(name: str, root: Path, expected: str, build: Callable[[], Dataset], num_classes: int) -> Tuple[Dataset, int]:
    try:
        return build(), num_classes
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise DatasetMissingError(
            f"{name} not found under --data-root {root}: expected {expected} "
            f"(ray_lth never downloads data; place the files there). Cause: {error}"
        ) from None


class ArrayImages(Dataset):
    """uint8 (N, H, W, 3) images and their labels, each item a PIL image through ``transform``
    (what torchvision's SVHN class returns)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def cifar10(root: Path, train: bool, image_size: int):
    return _real("CIFAR-10", root, "cifar-10-batches-py/ with data_batch_1..5 and test_batch",
                 lambda: CifarBatches("cifar10", root, train, _cifar_transform(train)), 10)


def cifar100(root: Path, train: bool, image_size: int):
    return _real("CIFAR-100", root, "cifar-100-python/ with train and test",
                 lambda: CifarBatches("cifar100", root, train, _cifar_transform(train)), 100)


# SVHN's .mat is read here rather than by torchvision's class, which refuses any file whose MD5
# differs from the published one (as cifar_files.py does for CIFAR): files written in the same
# format must load too. A missing or unreadable file still fails, by name.
def _svhn_mat(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat  # torchvision's own SVHN reader needs scipy too

    mat = loadmat(path)
    labels = mat["y"].astype(np.int64).reshape(-1)
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    return np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2)), labels  # (32, 32, 3, N) -> (N, 32, 32, 3)


def svhn(root: Path, train: bool, image_size: int):
    split = "train" if train else "test"
    # no crop or flip, as the authors' SVHN loader (digits are not mirror-symmetric)
    return _real("SVHN", root, f"{split}_32x32.mat",
                 lambda: ArrayImages(*_svhn_mat(root / f"{split}_32x32.mat"), _cifar_transform(False)), 10)


def fashion_mnist(root: Path, train: bool, image_size: int):
    # native 28×28, no augmentation, as the authors; their conv1 takes 1 channel, ours 3: the gray
    # channel is repeated (conv1 is not loaded from θ_p either way)
    transform = v2.Compose([v2.ToImage(), v2.Grayscale(3)])
    return _real("Fashion-MNIST", root, "FashionMNIST/raw/ with the four *-ubyte files",
                 lambda: tv_datasets.FashionMNIST(root, train=train, download=False, transform=transform), 10)


def _imagenet_style(train: bool, image_size: int) -> v2.Compose:
    """RandomResizedCrop + flip for training; Resize(256/224 of the crop) + CenterCrop to evaluate."""
    if train:
        steps = [v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(round(image_size * 256 / 224)), v2.CenterCrop(image_size)]
    # resized as PIL images, as the authors' (and torchvision's reference) ImageNet pipeline
    return v2.Compose(steps + [v2.ToImage()])


def visda2017(root: Path, train: bool, image_size: int):
    split = "train" if train else "validation"
    folder = root / "visda2017" / split
    return _real("VisDA2017", root, f"visda2017/{split}/<class>/<image> (an ImageFolder layout, 12 classes)",
                 lambda: tv_datasets.ImageFolder(folder, transform=_imagenet_style(train, 224)), 12)


def imagenet(root: Path, train: bool, image_size: int):
    """ImageNet train/val as ImageFolders (val sorted into class folders); as many classes as
    folders, which must equal the outputs of θ_p's head (1000 for θ_Img), checked when loaded."""
    split = "train" if train else "val"

    def build():
        folder = tv_datasets.ImageFolder(root / "imagenet" / split, transform=_imagenet_style(train, image_size))
        return folder, len(folder.classes)

    try:
        return build()
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise DatasetMissingError(
            f"ImageNet not found under --data-root {root}: expected imagenet/{split}/<wnid>/<image> "
            f"(ImageFolder layout, val sorted into the same class folders as train; ray_lth never downloads data). "
            f"Cause: {error}"
        ) from None


EMBEDDED: Dict[str, Callable] = {"shapes": embedded_shapes, "digits": embedded_digits, "gratings": embedded_gratings,
                                  "camo_shapes": embedded_camouflaged_shapes}
REAL: Dict[str, Callable] = {
    "cifar10": cifar10, "cifar100": cifar100, "svhn": svhn, "fashion_mnist": fashion_mnist, "visda2017": visda2017,
    "imagenet": imagenet,
}


def required_files(name: str) -> List[str]:
    """What the reader of real dataset ``name`` opens under the data root (a trailing ``/``: a
    folder that must hold something), for a check before any trial starts."""
    if name in ("cifar10", "cifar100"):
        return cifar_required_files(name)
    return {"svhn": ["train_32x32.mat", "test_32x32.mat"],
            "fashion_mnist": [f"FashionMNIST/raw/{split}-{kind}-ubyte" for split in ("train", "t10k")
                              for kind in ("images-idx3", "labels-idx1")],
            "visda2017": ["visda2017/train/", "visda2017/validation/"],
            "imagenet": ["imagenet/train/", "imagenet/val/"]}[name]


DATASET_STATS = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS, "svhn": SVHN_STATS,
                 "fashion_mnist": FASHION_MNIST_STATS, "visda2017": IMAGENET_STATS, "imagenet": IMAGENET_STATS}


def load_classification_dataset(name: str, train: bool, data_root: Optional[str] = None, image_size: int = 16):
    """(dataset, num_classes) for ``name``: embedded sets ignore ``data_root`` and hold normalised
    float images; real ones need it, and their items are uint8 images (``device_inputs``)."""
    if name in EMBEDDED:
        return EMBEDDED[name](train, image_size=image_size)
    if name in REAL:
        if not data_root:
            raise DatasetMissingError(f"task {name!r} reads a local dataset: pass --data-root (nothing is downloaded)")
        return REAL[name](Path(data_root), train, image_size)
    raise ValueError(f"No such classification dataset: {name!r}; choose one of {sorted(EMBEDDED) + sorted(REAL)}")


def device_inputs(name: str, normalize: str = "dataset") -> Optional[DeviceInputs]:
    """What a batch of ``name`` becomes where the model runs: None for the embedded sets (already
    normalised floats); a real set's uint8 images scaled and normalised as ``normalize`` says
    (NORMALIZATIONS)."""
    if name in EMBEDDED:
        return None
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r} is not allowed; choose one of {list(NORMALIZATIONS)}")
    return DeviceInputs(DATASET_STATS[name] if normalize == "dataset" else None)
