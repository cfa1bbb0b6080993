"""Unlabelled images for the self-supervised tasks: embedded sets (generated or shipped with a
package, nothing to download) and real ones read from ``--data-root`` with ``download=False``.

Each source yields one tensor image per item (float in [0, 1] or uint8) *before* normalisation,
because the views are cropped and colour-jittered first; the normalisation that follows is the
one the weights expect (the embedded θ_p saw the embedded sets' normalisation).
"""

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from ..cifar_files import CifarBatches, required_files as cifar_required_files
from ..datasets import EMBEDDED, EMBEDDED_STATS, IMAGENET_STATS, DatasetMissingError

NO_STATS = (None, None)  # no normalisation: converted simCLR checkpoints expect raw [0, 1] input
NORMALISATIONS = ("auto", "embedded", "imagenet", "none")

REAL_SOURCES = ("imagenet", "cifar10", "cifar100")
PHOTO_PATCHES = "photo_patches"
EMBEDDED_SOURCES = (PHOTO_PATCHES,) + tuple(sorted(EMBEDDED))
IMAGE_SOURCES = EMBEDDED_SOURCES + REAL_SOURCES


class ImagesOnly(Dataset):
    """The images of a labelled dataset, labels dropped."""

    def __init__(self, labelled: Dataset):
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.labelled[index][0]


class _RawEmbedded(Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _embedded(name: str, train: bool, image_size: int) -> Dataset:
    labelled, _ = EMBEDDED[name](train, image_size=image_size)
    mean, std = EMBEDDED_STATS
    normalised = labelled.tensors[0]
    raw = normalised * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    return _RawEmbedded(raw.clamp(0.0, 1.0))


def photo_patches(train: bool, image_size: int, n_train: int = 4096, n_test: int = 512) -> torch.Tensor:
    """Natural-image patches for the embedded self-supervised default: square crops of 2 to 4
    times ``image_size`` from the two photographs scikit-learn ships (``load_sample_images``),
    resized to ``image_size``; train crops come from the left three quarters of each photo, test
    crops from the right quarter. Unlike the shapes (8 kinds, colours that jitter erases), every
    patch has its own texture and edges, so telling instances apart — what simCLR and MoCo
    learn and Eq. (2) measures — is possible at 16 pixels."""
    from sklearn.datasets import load_sample_images  # ships its two JPEGs; no download

    generator = torch.Generator().manual_seed(10 if train else 11)
    photos = [torch.tensor(p).permute(2, 0, 1).float() / 255.0 for p in load_sample_images().images]
    count = n_train if train else n_test
    patches = torch.empty(count, 3, image_size, image_size)
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = photo.shape[1:]
        cut = (3 * width) // 4
        side = int(torch.randint(2 * image_size, 4 * image_size + 1, (), generator=generator))
        low, high = (0, cut - side) if train else (cut, width - side)
        left = int(torch.randint(low, high + 1, (), generator=generator))
        top = int(torch.randint(0, height - side + 1, (), generator=generator))
        crop = photo[:, top:top + side, left:left + side][None]
        patches[i] = torch.nn.functional.interpolate(crop, size=image_size, mode="area")[0]
    return patches


def _real(name: str, train: bool, root: Path) -> Dataset:
    to_tensor = v2.ToImage()  # uint8 tensor image; cropping and jitter come after
    try:
        if name == "imagenet":
            folder = root / "imagenet" / ("train" if train else "val")
            return ImagesOnly(tv_datasets.ImageFolder(folder, transform=to_tensor))
        return ImagesOnly(CifarBatches(name, root, train, transform=to_tensor))
    except (RuntimeError, FileNotFoundError, OSError) as error:
        expected = {"imagenet": "imagenet/train/<class>/<image> and imagenet/val/<class>/<image>",
                    "cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/"}[name]
        raise DatasetMissingError(f"{name} not found under --data-root {root}: expected {expected} "
                                  f"(ray_lth never downloads data). Cause: {error}") from None


def required_files(name: str) -> List[str]:
    """What ``load_images(name)`` opens under the data root, both splits; none for embedded sets."""
    if name == "imagenet":
        return ["imagenet/train/", "imagenet/val/"]
    return cifar_required_files(name) if name in REAL_SOURCES else []


def load_images(name: str, train: bool, data_root: Optional[str], image_size: int, limit: int = 0) -> Dataset:
    """The images of ``name``; ``limit`` > 0 keeps that many, chosen by a fixed shuffle (so a
    class-sorted folder still gives mixed evaluation batches). Test images are always in that
    fixed shuffled order."""
    if name == PHOTO_PATCHES:
        images = _RawEmbedded(photo_patches(train, image_size))
    elif name in EMBEDDED:
        images = _embedded(name, train, image_size)
    elif name in REAL_SOURCES:
        if not data_root:
            raise DatasetMissingError(f"dataset {name!r} is read from a local folder: pass --data-root "
                                      f"(nothing is downloaded)")
        images = _real(name, train, Path(data_root))
    else:
        raise ValueError(f"dataset={name!r} is not allowed; choose one of {list(IMAGE_SOURCES)}")
    if limit or not train:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0)).tolist()
        images = Subset(images, order[:limit] if limit else order)
    return images


def normalisation(name: str, dataset: str) -> Tuple[Optional[Sequence[float]], Optional[Sequence[float]]]:
    """(mean, std) applied after augmentation, (None, None) for none (as the paper's simCLR code,
    whose ``normalize`` is defined and never used); ``auto``: the embedded sets' own for
    embedded data, ImageNet's for real data."""
    if name == "auto":
        name = "embedded" if dataset in EMBEDDED_SOURCES else "imagenet"
    return {"embedded": EMBEDDED_STATS, "imagenet": IMAGENET_STATS, "none": NO_STATS}[name]
