"""Files in the real formats of the paper's inputs, written by tests with generated contents.

- CIFAR-10 as ``cifar-10-batches-py/`` (pickles of dicts with 'data', uint8 N×3072, and 'labels'; the
  official Python 2 pickles load with these same str keys under ``encoding='latin1'``);
- ImageNet as an ``ImageFolder`` (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``);
- θ_p files: a torchvision ResNet state dict, a MoCo v2 checkpoint (``{"epoch", "arch",
  "state_dict": {"module.encoder_q.*", "module.encoder_k.*", "module.queue", "module.queue_ptr"},
  "optimizer"}``, as facebookresearch/moco's main_moco.py saves it) and a simCLR checkpoint
  converted to PyTorch (``{"state_dict": <torchvision keys, fc included>}``, as simclr-converter).

Values are random; key layout, nesting, dtypes and shapes are the real ones.
``PAPER_CIFAR_DRY_RUN`` is the toy size at which CI (tests/test_paper_dry_run.py) and
benchmarks/gpu_check.py run the ``paper_cifar`` space on these files.
"""

import pickle
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from PIL import Image
from torchvision import models as tv_models

# launchers/sweep.py flags after --weights and --data-root: these seeds, rounds 0..PAPER_CIFAR_ROUNDS,
# one epoch each
PAPER_CIFAR_SEEDS, PAPER_CIFAR_ROUNDS = (0, 1), 1
PAPER_CIFAR_DRY_RUN = ["--set", "epochs=1", "--set", f"rounds={PAPER_CIFAR_ROUNDS}",
                       "--set", f"seed={list(PAPER_CIFAR_SEEDS)}", "--set", "val_images=20", "--set", "batch_size=20"]


def write_cifar10(root, n_train: int = 300, n_test: int = 200, seed: int = 0) -> Path:
    """Five train batches and a test batch of class-dependent noise images; returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n, label):
        labels = rng.integers(0, 10, n)
        # a class-dependent mean colour, so a network can learn something in one epoch
        base = (labels[:, None] * 23 % 256).astype(np.float64)
        data = np.clip(base + rng.normal(0, 40, (n, 3072)), 0, 255).astype(np.uint8)
        return {"batch_label": label, "labels": labels.tolist(), "data": data,
                "filenames": [f"img_{i}.png" for i in range(n)]}

    sizes = np.full(5, n_train // 5)
    sizes[: n_train % 5] += 1
    for k, size in enumerate(sizes, start=1):
        _pickle(batch(int(size), f"training batch {k} of 5"), folder / f"data_batch_{k}")
    _pickle(batch(n_test, "testing batch 1 of 1"), folder / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle({"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072},
            folder / "batches.meta")
    return Path(root)


def _pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_imagenet_folder(root, classes: int = 1000, train_per_class: int = 1, val_per_class: int = 1,
                          size: int = 40, seed: int = 0) -> Path:
    """``root/imagenet/{train,val}/n<8 digits>/<name>.JPEG``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = Path(root) / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{c}_{i}.JPEG", format="JPEG", quality=85)
    return Path(root)


def resnet50_state(seed: int = 0) -> Dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in tv_models.resnet50(weights=None).state_dict().items()}


def write_torchvision_resnet50(path, seed: int = 0) -> Dict[str, torch.Tensor]:
    state = resnet50_state(seed)
    torch.save(state, path)
    return state


def write_moco_v2_checkpoint(path, seed: int = 1, queue_size: int = 65536) -> Dict[str, torch.Tensor]:
    """A MoCo v2 checkpoint: query and key encoders with the 2048-2048-128 MLP head; returns its state_dict."""
    torch.manual_seed(seed)
    encoder = tv_models.resnet50(weights=None, num_classes=128)
    encoder.fc = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), encoder.fc)
    query = encoder.state_dict()
    state = {f"module.encoder_q.{k}": v.clone() for k, v in query.items()}
    state.update({f"module.encoder_k.{k}": v.clone() + 0.01 for k, v in query.items()})  # the EMA differs
    state["module.queue"] = torch.nn.functional.normalize(torch.randn(128, queue_size), dim=0)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    return state


def write_simclr_converted(path, seed: int = 2) -> Dict[str, torch.Tensor]:
    """A simCLR checkpoint converted to PyTorch: torchvision keys (with the linear-eval fc) under 'state_dict'."""
    state = resnet50_state(seed)
    torch.save({"state_dict": state}, path)
    return state
