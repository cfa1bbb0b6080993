"""The 32-px datasets read from their on-disk formats and normalised as the authors' dataset.py
(issue 12, item 7): each its own mean/std (SVHN no longer CIFAR's), or none for converted simCLR
checkpoints; Fashion-MNIST at its native 28 px, its gray channel repeated three times."""

import pickle

import numpy as np
import pytest
import torch

from ray_lth.config import ImpConfig
from ray_lth.tasks import build_task

# the authors' values, copied from their dataset.py (VITA-Group/CV_LTH_Pre-training)
AUTHORS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.5071, 0.4866, 0.4409], [0.2009, 0.1984, 0.2023]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1201, 0.1231, 0.1052]),
    "fashion_mnist": ([0.1436] * 3, [0.1609] * 3),
}


def write_cifar(root, n=8, classes=10, seed=0):
    """cifar-10-batches-py/ (or cifar-100-python/ for classes=100) pickles with random images."""
    rng = np.random.default_rng(seed)
    folder, files, key = (("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels")
                          if classes == 10 else ("cifar-100-python", ["train", "test"], "fine_labels"))
    (root / folder).mkdir(parents=True)
    for name in files:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: rng.integers(0, classes, n).tolist()}
        with open(root / folder / name, "wb") as f:
            pickle.dump(entry, f)
    return root


def write_svhn(root, n=6, seed=0):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        labels = np.array([[10]] + [[k % 9 + 1] for k in range(n - 1)])  # SVHN's "10" is the digit 0
        savemat(root / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": labels})
    return root


def write_fashion_mnist(root, n=5, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        header = np.array([2051, n, 28, 28], ">i4").tobytes()  # idx3: magic, count, rows, columns
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels.tobytes())
    return root


def _pixels_cifar(root, name):
    folder, file = ("cifar-10-batches-py", "test_batch") if name == "cifar10" else ("cifar-100-python", "test")
    with open(root / folder / file, "rb") as f:
        entry = pickle.load(f)
    return torch.from_numpy(entry["data"][0].reshape(3, 32, 32).astype(np.float32) / 255)


def _seen_by_model(task, index=0, split="test_set"):
    """An image as the model sees it: loaded (uint8) and made the model's input (normalised) on the CPU."""
    image = getattr(task, split)[index][0]
    assert image.dtype == torch.uint8  # decoded and augmented as uint8; scaled and normalised where the model runs
    return task.model_inputs(image[None], torch.device("cpu"))[0]


def _normalised(pixels, name):
    mean, std = (torch.tensor(v)[:, None, None] for v in AUTHORS[name])
    return (pixels - mean) / std


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles_load_with_the_authors_statistics(tmp_path, name, classes):
    root = write_cifar(tmp_path, classes=classes)
    task = build_task(name, str(root))
    assert task.num_outputs == classes and len(task.train_set) == (40 if classes == 10 else 8)
    pixels = _pixels_cifar(root, name)
    assert torch.allclose(_seen_by_model(task), _normalised(pixels, name), atol=1e-5)
    raw = _seen_by_model(build_task(name, str(root), normalize="none"))
    assert torch.allclose(raw, pixels, atol=1e-6)


def test_svhn_has_its_own_statistics_not_cifars(tmp_path):
    from scipy.io import loadmat

    root = write_svhn(tmp_path)
    task = build_task("svhn", str(root))
    mat = loadmat(root / "test_32x32.mat")
    pixels = torch.from_numpy(mat["X"][..., 0].astype(np.float32) / 255).permute(2, 0, 1)
    assert torch.allclose(_seen_by_model(task), _normalised(pixels, "svhn"), atol=1e-5)
    assert task.test_set[0][1] == 0  # SVHN's "10" is the digit 0
    # no augmentation, as the authors: a training image comes out the same every time
    assert torch.equal(task.train_set[1][0], task.train_set[1][0])


def test_fashion_mnist_is_28_px_gray_repeated_over_three_channels(tmp_path):
    root = write_fashion_mnist(tmp_path)
    task = build_task("fashion_mnist", str(root))
    image = _seen_by_model(task)
    assert image.shape == (3, 28, 28)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    raw = (root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:16 + 784]
    pixels = torch.frombuffer(bytearray(raw), dtype=torch.uint8).float().view(1, 28, 28) / 255
    assert torch.allclose(image, _normalised(pixels.expand(3, 28, 28), "fashion_mnist"), atol=1e-5)


def test_normalize_is_checked_with_the_config():
    with pytest.raises(ValueError, match=r"normalize='imagenet' is not allowed; choose one of \['dataset', 'none'\]"):
        ImpConfig.from_dict({"task": "cifar10", "normalize": "imagenet", "rewind": "init"})
    config = ImpConfig.from_dict({"task": "svhn", "normalize": "none", "rewind": "init"})
    assert config.task_options == {"normalize": "none"}
    with pytest.raises(ValueError, match="unknown config keys"):  # embedded sets are pre-normalised
        ImpConfig.from_dict({"task": "digits", "normalize": "none", "rewind": "init"})
