"""CIFAR-10/100 read from their published on-disk format (the python pickles), without a download.

torchvision's ``CIFAR10``/``CIFAR100`` refuse any file whose md5 differs from the official
archive, so a subset, a re-pickled copy or a test's generated batches cannot be read at all. This
reader takes the documented format itself (a pickled dict with ``data``: uint8 N×3072, channels
first, and ``labels`` or ``fine_labels``), checks its shape and label range with a message naming
the file, and says once when the files are not the official ones (md5 from torchvision's own list):
such numbers are not comparable to the paper's.
"""

import hashlib
import pickle
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100


class CifarFormatError(ValueError):
    """A CIFAR batch file that is missing or not in the published format; the message names it."""


# folder, train files, test files (with the official md5), label key, classes
_LAYOUTS = {
    "cifar10": (CIFAR10.base_folder, CIFAR10.train_list, CIFAR10.test_list, "labels", 10),
    "cifar100": (CIFAR100.base_folder, CIFAR100.train_list, CIFAR100.test_list, "fine_labels", 100),
}


def required_files(name: str) -> List[str]:
    """The batch files of ``name`` under the data root (what ``CifarBatches`` reads, both splits)."""
    folder, train_files, test_files, _, _ = _LAYOUTS[name]
    return [f"{folder}/{file_name}" for file_name, _ in list(train_files) + list(test_files)]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_batch(path: Path, label_key: str, classes: int) -> Tuple[np.ndarray, List[int]]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # the official batches are Python 2 pickles
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None  # the caller names what is expected
    except Exception as error:
        raise CifarFormatError(f"{path}: not a CIFAR batch pickle ({type(error).__name__}: {error})") from None
    if not isinstance(entry, dict):
        raise CifarFormatError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise CifarFormatError(f"{path}: expected keys 'data' and {label_key!r}, found {sorted(entry)}")
    data = np.asarray(entry["data"])
    labels = [int(x) for x in entry[label_key]]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise CifarFormatError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels and not 0 <= min(labels) <= max(labels) < classes:
        raise CifarFormatError(f"{path}: labels must lie in [0, {classes}), found [{min(labels)}, {max(labels)}]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # (N, 32, 32, 3): PIL's layout


class CifarBatches(Dataset):
    """One split of CIFAR-10 or CIFAR-100 under ``root``; items are (transformed PIL image, label)."""

    def __init__(self, name: str, root, train: bool, transform: Optional[Callable] = None):
        if name not in _LAYOUTS:
            raise ValueError(f"No such CIFAR dataset: {name!r}; choose one of {sorted(_LAYOUTS)}")
        folder, train_files, test_files, label_key, self.num_classes = _LAYOUTS[name]
        files: Sequence = train_files if train else test_files
        paths = [Path(root) / folder / file_name for file_name, _ in files]
        batches = [_read_batch(p, label_key, self.num_classes) for p in paths]
        self.data = np.concatenate([b[0] for b in batches])
        self.targets = [label for b in batches for label in b[1]]
        self.transform = transform
        self.official = all(_md5(p) == md5 for p, (_, md5) in zip(paths, files))
        if not self.official:
            print(f"ray_lth: {Path(root) / folder} holds {name} in its published format but not the official "
                  f"files (md5 differs): figures from it are not comparable to the paper's", file=sys.stderr)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        return (self.transform(image) if self.transform else image), self.targets[index]
