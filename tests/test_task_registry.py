"""The task registry: declared task options flow through configs, and a task that wraps the
backbone trains it with the mask holding on the backbone's own parameter names."""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import ray_lth.tasks
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.tasks import TASKS, build_task, register_task


class _HeadOnTopTask:
    """A wrapping task: a fresh dense head over the backbone's logits, trained on digits."""

    metric = "top1"

    def __init__(self, scale):
        self.inner = build_task("digits", image_size=16)
        self.name, self.num_outputs, self.scale = "wrapped_digits", 10, scale

    def wrap(self, backbone, spec):
        return nn.Sequential(backbone, nn.Linear(10, 10))

    def train_batches(self, batch_size, generator):
        return self.inner.train_batches(batch_size, generator)

    def batches_per_epoch(self, batch_size):
        return self.inner.batches_per_epoch(batch_size)

    def loss(self, model, batch, device):
        return self.inner.loss(model, batch, device) * self.scale

    def evaluate(self, model, device):
        return self.inner.evaluate(model, device)


if "wrapped_digits" not in TASKS:
    register_task("wrapped_digits", lambda name, root, size, workers, scale: _HeadOnTopTask(scale),
                  options={"scale": 1.0})


def test_task_options_are_flat_config_keys_with_defaults_and_named_errors():
    config = ImpConfig.from_dict(dict(task="wrapped_digits", rewind="init", scale=0.5))
    assert config.task_options == {"scale": 0.5} and config.to_dict()["scale"] == 0.5
    assert ImpConfig.from_dict(dict(task="wrapped_digits", rewind="init")).task_options == {"scale": 1.0}
    with pytest.raises(ValueError, match=r"unknown config keys \['scale'\] \(task 'digits'\)"):
        ImpConfig.from_dict(dict(task="digits", rewind="init", scale=0.5))
    with pytest.raises(ValueError, match=r"task 'wrapped_digits' takes no option \['temperature'\]"):
        build_task("wrapped_digits", temperature=0.1)


def test_a_wrapped_backbone_keeps_its_pruned_weights_at_zero():
    config = ImpConfig.from_dict(dict(model="resnet8", task="wrapped_digits", rewind="init", rounds=1,
                                      epochs=1, device="cpu", image_size=16))
    results = list(run_trajectory(config))
    assert [round(r.record.sparsity, 2) for r in results] == [0.0, 0.2]
    assert results[0].record.metric > 0.2  # learns through the wrapper (chance: 0.1)
    # the round-1 mask names backbone parameters only; the wrapper's head is never in it
    assert all(name.startswith(("layer", "conv")) for name in results[1].state.round_mask)


def test_train_masked_resolves_the_mask_on_the_wrapped_module():
    from ray_lth.models import build_model, prunable_parameters
    from ray_lth.pruning import global_magnitude_prune
    from ray_lth.masks import ones_mask
    from ray_lth.train import schedule_for, train_masked

    torch.manual_seed(0)
    backbone = build_model("resnet8", 10)
    prunable = prunable_parameters(backbone, ("conv1", "fc"))
    mask = global_magnitude_prune({n: p.detach() for n, p in prunable.items()}, ones_mask(prunable), 0.5)
    task = build_task("wrapped_digits")
    wrapper = task.wrap(backbone, None)
    train_masked(wrapper, task, schedule_for("embedded", epochs=1), mask, torch.device("cpu"),
                 torch.Generator().manual_seed(0), masked_module=backbone)
    for name, keep in mask.items():
        assert (prunable[name].detach()[~keep] == 0).all(), name
    assert wrapper[1].weight.grad is not None  # the wrapper's own head trained too


def _package_imports():
    """{module: the ray_lth.tasks modules it imports} over the source of ray_lth/tasks/ (a
    ``from package import name`` counts as the submodule where ``name`` is one, else the package)."""
    root = Path(ray_lth.tasks.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = ("ray_lth", "tasks") + path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    imports = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                source = ".".join(part for part in (base, node.module or "") if part)
                found |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        imports[module] = {name for name in found if name in modules}
    return imports


def test_registration_runs_one_way_package_to_families_to_registry():
    imports = _package_imports()
    families = ("ray_lth.tasks.classification", "ray_lth.tasks.ssl", "ray_lth.tasks.detection",
                "ray_lth.tasks.segmentation")
    assert set(families) <= imports["ray_lth.tasks"]
    reached, todo = set(), ["ray_lth.tasks.registry"]
    while todo:
        for name in imports[todo.pop()] - reached:
            reached.add(name)
            todo.append(name)
    assert not [name for name in reached if name == "ray_lth.tasks" or name.startswith(families)], reached
    # no module imports the package back (as ssl/ once took register_task from it)
    assert [module for module, found in imports.items() if "ray_lth.tasks" in found] == []
