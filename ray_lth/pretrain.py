"""The embedded default's θ_p: a short supervised pre-training of a small model on the
procedural shapes set, saved as a torchvision-style weights file and then transferred.

It stands in for ImageNet pre-training so that pre-train → IMP → transfer runs offline in
minutes on a CPU. The file is cached by its recipe; a cached file is reused, never retrained.
"""

import json
from pathlib import Path

import torch

from .device import prepare_model, resolve_device
from .masks import ones_mask
from .models import build_model, get_model_spec, prunable_parameters
from .tasks import build_task
from .train import TrainHparams, train_masked
from .weights import file_sha256, save_weights

EMBEDDED_RECIPE = {"task": "shapes", "epochs": 3, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4, "seed": 0,
                   "image_size": 16}


def pretrain(model_name: str, path, recipe: dict = EMBEDDED_RECIPE, device: str = "auto") -> dict:
    """Train ``model_name`` on ``recipe['task']`` from its seeded random init and save it to ``path``.

    Returns the metadata written beside it (recipe, test accuracy, sha256). On a CPU it trains on
    one thread: the recipe, not the machine's core count, decides θ_p (a multi-threaded sum rounds
    differently), so every machine gets the weights that the README's numbers come from.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(model_name, path, recipe, device)
    finally:
        torch.set_num_threads(threads)


def _pretrain(model_name: str, path, recipe: dict, device: str) -> dict:
    task = build_task(recipe["task"], image_size=recipe["image_size"])
    torch.manual_seed(recipe["seed"])
    model = build_model(model_name, task.num_outputs)
    resolved = resolve_device(device)
    prepare_model(model, resolved)
    hparams = TrainHparams(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                           weight_decay=recipe["weight_decay"])
    spec = get_model_spec(model_name)
    train_masked(model, task, hparams, ones_mask(prunable_parameters(model, spec.never_pruned)), resolved,
                 torch.Generator().manual_seed(recipe["seed"]))
    metrics = task.evaluate(model, resolved)
    sha256 = save_weights(model, path)
    meta = {"model": model_name, "recipe": recipe, "metrics": metrics, "sha256": sha256}
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=1))
    return meta


def embedded_weights(model_name: str, cache_dir, device: str = "auto") -> Path:
    """The cached embedded θ_p for ``model_name`` (pre-trained on first use)."""
    recipe_key = file_key(model_name, EMBEDDED_RECIPE)
    path = Path(cache_dir) / f"{model_name}-shapes-{recipe_key}.pt"
    meta_path = Path(str(path) + ".json")
    if path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text())["sha256"] == file_sha256(path):
        return path
    pretrain(model_name, path, EMBEDDED_RECIPE, device)
    return path


def file_key(model_name: str, recipe: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([model_name, recipe], sort_keys=True).encode()).hexdigest()[:10]
