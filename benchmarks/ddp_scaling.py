"""Training throughput of one IMP round over N data-parallel workers, against one process.

    python benchmarks/ddp_scaling.py                      # CPU: N = 1, 2, gloo, 1 thread a worker
    python benchmarks/ddp_scaling.py --device cuda --workers 1 2 4 8 --model resnet50 \\
        --task shapes --image-size 224 --batch-size 256 --epochs 1   # one GPU a worker, NCCL

Each N trains the same round (the same mask at 20 % sparsity, seed, global batch and data) with
``imp.train_round``: N = 1 is the one-process path, N > 1 spawns N processes that each run it
as one rank (``distributed.DataParallel``; what a Ray Train worker runs, without Ray's ~10–15 s
start per round). Throughput is training images per second over the round's epochs, from the
first batch to the end of the last epoch (model building and evaluation left out), the median of
``--repeats`` turns; efficiency is throughput ÷ (N × the one-process throughput).
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.config import ImpConfig  # noqa: E402
from ray_lth.distributed import DataParallel  # noqa: E402
from ray_lth.imp import _fresh_model, round_generator, train_round  # noqa: E402
from ray_lth.masks import ones_mask  # noqa: E402
from ray_lth.models import get_model_spec, prunable_parameters  # noqa: E402
from ray_lth.pruning import prune  # noqa: E402
from ray_lth.rewind import capture_state  # noqa: E402
from ray_lth.tasks import build_task, wrap_for_training  # noqa: E402


class RoundStart(NamedTuple):
    """What ``train_round`` reads of a trajectory's state; nothing restored or carried over
    selectively (``rewind_scope`` all), as round 1 of a trajectory whose round 0 carried nothing."""

    mask: dict
    rewind_state: dict
    restored_keys: Optional[list] = None
    carried: Optional[object] = None


def round_start(config: ImpConfig, task) -> RoundStart:
    """Round 1's start: the round-0 model with 20 % of its prunable weights pruned by magnitude."""
    spec, model = _fresh_model(config, task.num_outputs, 0)
    trained_model = wrap_for_training(task, model, spec)
    prunable = {k: p.detach() for k, p in prunable_parameters(model, get_model_spec(config.model).never_pruned).items()}
    mask = prune("global", prunable, ones_mask(prunable), 0.2, round_generator(config.seed, 0, 2))
    return RoundStart(mask, capture_state(model, trained_model))


def _train(config: ImpConfig, device: torch.device, parallel=None) -> float:
    """Seconds of training (first batch to the end of the last epoch)."""
    task = build_task(config.task, None, config.image_size, **config.task_options)
    start = round_start(config, task)
    seconds = []
    train_round(config, task, 1, start, device, lambda _round, done, epochs, loss, s: seconds.append(s),
                distributed=parallel)
    return seconds[-1]


def _rank(rank: int, world_size: int, config: ImpConfig, device_type: str, threads: int, folder: str, out) -> None:
    torch.set_num_threads(threads)
    device = torch.device(f"cuda:{rank}") if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{folder}/pg",
                            rank=rank, world_size=world_size)
    seconds = _train(config, device, DataParallel(rank, world_size, device))
    if rank == 0:
        out.put(seconds)
    dist.destroy_process_group()


def measure(config: ImpConfig, workers: int, device_type: str, threads: int) -> float:
    if workers == 1:
        torch.set_num_threads(threads)
        return _train(config, torch.device("cuda:0" if device_type == "cuda" else "cpu"))
    context = mp.get_context("spawn")
    out = context.SimpleQueue()
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_rank, args=(workers, config, device_type, threads, folder, out), nprocs=workers, join=True)
    return out.get()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--task", default="shapes")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.workers[0] != 1:
        parser.error("--workers must start with 1: efficiency is measured against one process")
    if args.device == "cuda" and max(args.workers) > torch.cuda.device_count():
        parser.error(f"--workers {max(args.workers)} needs as many GPUs; torch sees {torch.cuda.device_count()}")
    configs = {workers: ImpConfig.from_dict(dict(model=args.model, task=args.task, rewind="init", epochs=args.epochs,
                                                 batch_size=args.batch_size, image_size=args.image_size,
                                                 device=args.device, workers_per_trial=workers))
               for workers in args.workers}
    task = build_task(args.task, None, args.image_size, **configs[1].task_options)
    images = min(task.batches_per_epoch(args.batch_size) * args.batch_size, len(task.train_set)) * args.epochs
    # the Ns take turns, --repeats times, and each keeps its median: drift in the machine's load
    # (shared cores) hits every N alike
    seconds = {workers: [] for workers in args.workers}
    for repeat in range(args.repeats):
        for workers in args.workers:
            seconds[workers].append(measure(configs[workers], workers, args.device, args.threads_per_worker))
            print(f"repeat {repeat + 1}, N={workers}: {images / seconds[workers][-1]:.0f} images/s", flush=True)
    base = images / statistics.median(seconds[1])
    rows = []
    for workers in args.workers:
        throughput = images / statistics.median(seconds[workers])
        rows.append([workers, f"{throughput:.0f}", f"{throughput / base:.2f}", f"{throughput / (workers * base):.2f}"])
    print(f"\n{args.model} on {args.task} ({args.image_size} px), global batch {args.batch_size}, {args.device}, "
          f"{args.threads_per_worker} thread(s) a worker")
    print(format_table(["workers", "images/s", "speed-up", "efficiency vs linear"], rows))


if __name__ == "__main__":
    main()
