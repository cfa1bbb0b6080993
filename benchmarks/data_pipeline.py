"""Images per second of a CIFAR-format training epoch, by number of data loader workers.

    python benchmarks/data_pipeline.py [--images 10000] [--workers 0 1 2] [--device auto]

Writes CIFAR-10 in its published format (the python pickles, random class-dependent images, as
tests/paper_files.py) into a temporary folder, builds the ``cifar10`` task from it as a trial
does (file decoding included) and, for each number of loader workers (default 0, 1, ... up to
the cores), measures:
- loader: one training epoch of batches (crop, flip, uint8 out of the workers) made the model's
  input on the device (scaled and normalised there); the first epoch includes starting the
  workers, the second reuses them (persistent workers);
- loader + step: the same batches with a training step of resnet18_cifar (SGD in the task's
  precision, fp32 by default, as ray_lth.train does); on the CPU only ``--step-batches`` batches
  (a full epoch takes minutes there), on a GPU the whole epoch.
On a GPU the loaders pin their memory, as a trial's do. Prints a table.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from paper_files import write_cifar10  # noqa: E402
from ray_lth.cli import format_table  # noqa: E402
from ray_lth.device import autocast, prepare_model, resolve_device  # noqa: E402
from ray_lth.models import build_model  # noqa: E402
from ray_lth.tasks import Loading, build_task  # noqa: E402
from ray_lth.tasks.loading import process_cpus  # noqa: E402


def loader_epoch(task, batch_size: int, device: torch.device, seed: int = 0) -> float:
    """Seconds for one epoch of model inputs on ``device``."""
    started = time.perf_counter()
    for images, labels in task.train_batches(batch_size, _generator(seed)):
        task.model_inputs(images, device)
        labels.to(device, non_blocking=True)
    _sync(device)
    return time.perf_counter() - started


def loader_and_step(task, batch_size: int, device: torch.device, max_batches: int,
                    model_name: str = "resnet18_cifar") -> tuple:
    """(images, seconds) for up to ``max_batches`` training steps of ``model_name``."""
    torch.manual_seed(0)
    model = prepare_model(build_model(model_name, 10), device, task.loading.precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    images_seen, started = 0, time.perf_counter()
    for index, batch in enumerate(task.train_batches(batch_size, _generator(1))):
        if index == max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, task.loading.precision):
            loss = task.loss(model, batch, device)
        loss.backward()
        optimizer.step()
        images_seen += len(batch[1])
    _sync(device)
    return images_seen, time.perf_counter() - started


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_workers(root, workers: int, device: torch.device, batch_size: int, step_batches: int,
                    model_name: str = "resnet18_cifar") -> dict:
    """The figures of one loader worker count on the CIFAR-format files under ``root``: the task's
    build (file decoding), two loader epochs (the second reusing persistent workers) and the loader
    with ``step_batches`` training steps of ``model_name``."""
    loading = Loading(workers, pin_memory=device.type == "cuda" and workers > 0, persistent_workers=workers > 0)
    started = time.perf_counter()
    task = build_task("cifar10", root, image_size=32, loading=loading)
    built = time.perf_counter() - started
    images = len(task.train_set)
    first = loader_epoch(task, batch_size, device)
    second = loader_epoch(task, batch_size, device)  # the same generator: the same workers
    seen, step_seconds = loader_and_step(task, batch_size, device, step_batches, model_name)
    return {"workers": workers, "task_built_s": built, "loader_images_per_s_epoch1": images / first,
            "loader_images_per_s_epoch2": images / second, "loader_step_images_per_s": seen / step_seconds,
            "images_stepped": seen}


def main(argv=None) -> None:
    cores = process_cpus()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000, help="training images in the generated set")
    parser.add_argument("--workers", type=int, nargs="+", default=list(range(cores + 1)),
                        help=f"loader worker counts to measure (default 0..{cores}, the cores)")
    parser.add_argument("--batch-size", type=int, default=256, help="the paper's CIFAR batch size (Table 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--step-batches", type=int,
                        help="training steps measured per worker count (default: 1 on the CPU, the whole epoch on a GPU)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    step_batches = args.step_batches or (1 if device.type == "cpu" else 10**9)
    torch.set_num_threads(cores)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {cores} cores"
    print(f"device: {device} ({name}); torch threads {torch.get_num_threads()}; {args.images} CIFAR-format "
          f"training images, batch {args.batch_size}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ray_lth_pipeline_") as tmp:
        started = time.perf_counter()
        write_cifar10(tmp, n_train=args.images, n_test=1000)
        written = time.perf_counter() - started
        for workers in args.workers:
            m = measure_workers(tmp, workers, device, args.batch_size, step_batches)
            rows.append([workers, f"{m['task_built_s']:.2f}", f"{m['loader_images_per_s_epoch1']:,.0f}",
                         f"{m['loader_images_per_s_epoch2']:,.0f}", f"{m['loader_step_images_per_s']:,.0f}",
                         m["images_stepped"]])
    print(f"(pickles written in {written:.1f} s)")
    print(format_table(["loader workers", "task built s (file decoding)", "loader img/s (epoch 1)",
                        "loader img/s (epoch 2)", "loader + step img/s", "images stepped"], rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
