"""Data-parallel IMP rounds: a Tune trial runs each round over N Ray Train workers.

The trial keeps the trajectory (the rewind state, pruning between rounds, the records, its
checkpoints and resumption); ``DataParallelRounds`` is the ``round_runner`` it hands to
``run_trajectory``. Each round starts one ``TorchTrainer`` (gloo on CPUs, NCCL on GPUs): the
trial puts the round's mask, rewind state and what it carries over from the last round in the
object store, every worker runs ``imp.train_round`` as one rank (``distributed.DataParallel``),
and rank 0 reports the round's scores, its trained prunable weights, what the next round carries
over (rank 0's: the ranks' weights and momentum are equal, their BatchNorm statistics their own,
rank 0's evaluated) and (round 0 of an early-rewind trajectory) θ_k% with a checkpoint, which is how Ray Train hands back a result (without one, ``Result.metrics`` is
None). One trainer per round costs ~10–15 s to start, nothing next to a round at the scale that
needs several GPUs, and keeps each round self-contained: with ``FailureConfig(max_failures)`` a
worker that dies makes Ray Train restart the whole worker group, which reruns the round from its
rewind point; no partial-round state is ever read back (workers report nothing before the end).

The trainer's storage is the trial's own (``storage_filesystem`` + ``trial_fs_path``, so workers
on other nodes can write it, local disk or object store alike), under ``data_parallel/``; a
round's folder is deleted once the trial has read it back: the trial's own checkpoint holds what
lasts.
"""

import io
import os
import tempfile
import uuid
from typing import NamedTuple, Optional

import torch

from ..config import ImpConfig
from ..device import use_cpus
from ..distributed import DataParallel
from ..imp import TrainedRound, train_round
from ..rewind import CarriedState
from ..tasks import build_task, task_loading

DATA_PARALLEL_DIR = "data_parallel"  # in the trial's folder: the rounds' trainers, each deleted once read
ROUND_FILE = "round.pt"
MAX_ROUND_FAILURES = 2  # worker-group restarts of one round before the trial itself fails


class WorkerResources(NamedTuple):
    cpus_per_worker: float
    gpus_per_worker: float


class _RoundStart(NamedTuple):
    """What ``train_round`` reads of the trajectory state."""

    mask: dict
    rewind_state: dict
    restored_keys: Optional[list]
    carried: Optional[CarriedState]


def _round_on_worker(loop_config: dict) -> None:
    """One rank of a round (the ``train_loop_per_worker`` of the round's TorchTrainer)."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    config: ImpConfig = loop_config["config"]
    use_cpus(loop_config["cpus"])  # torch's threads: the worker's CPUs, however torch was imported
    round_index = loop_config["round"]
    start = _RoundStart(**ray.get(loop_config["start"]))
    # each rank's loader workers come out of its own CPUs (tasks.loading)
    loading = task_loading(config.task, config.task_options, config.num_workers, device, loop_config["cpus"],
                           config.train.precision)
    task = build_task(config.task, config.data_root, config.image_size, loading,
                      val_images=config.val_images, **config.task_options)
    parallel = DataParallel(rank, context.get_world_size(), device)
    trained = train_round(config, task, round_index, start, device, loop_config["progress"] if rank == 0 else None,
                          distributed=parallel)
    if rank != 0:
        ray.train.report({"round": round_index}, checkpoint=None)
        return
    captured = trained.rewind_state is not start.rewind_state  # θ_k%, captured this round
    carried = trained.carried
    payload = {"metrics": trained.metrics, "start_digest": trained.start_digest,
               "trained": {name: t.to("cpu") for name, t in trained.trained.items()},
               "rewind_state": trained.rewind_state if captured else None,
               "carried": None if carried is None else {"entries": carried.entries, "optimizer": carried.optimizer}}
    with tempfile.TemporaryDirectory(prefix="ray_lth_dp_round_") as folder:
        torch.save(payload, os.path.join(folder, ROUND_FILE))
        ray.train.report({"round": round_index}, checkpoint=ray.train.Checkpoint.from_directory(folder))


class DataParallelRounds:
    """A ``round_runner`` for ``run_trajectory``: each round trains on ``config.workers_per_trial``
    Ray Train workers, each holding ``resources``. ``storage_filesystem``/``storage_path``: where
    the rounds' trainers keep their (transient) results; the trial's own storage."""

    def __init__(self, resources: WorkerResources, storage_filesystem, storage_path: str,
                 max_failures: int = MAX_ROUND_FAILURES):
        self.resources = resources
        self.storage_filesystem = storage_filesystem
        self.storage_path = storage_path
        self.max_failures = max_failures

    def __call__(self, config: ImpConfig, task, round_index: int, state, device, progress=None) -> TrainedRound:
        import ray
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        workers, (cpus, gpus) = config.workers_per_trial, self.resources
        start = ray.put({"mask": state.mask, "rewind_state": state.rewind_state, "restored_keys": state.restored_keys,
                         "carried": state.carried})
        per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
        name = f"round_{round_index:02d}-{uuid.uuid4().hex[:8]}"  # a rerun never meets an earlier attempt's folder
        trainer = TorchTrainer(
            _round_on_worker,
            train_loop_config={"config": config, "round": round_index, "start": start, "progress": progress,
                               "cpus": cpus},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker),
            run_config=RunConfig(name=name, storage_path=self.storage_path, storage_filesystem=self.storage_filesystem,
                                 failure_config=FailureConfig(max_failures=self.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1)))
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"round {round_index}: its data-parallel workers reported no result "
                               f"({result.error or 'no error given'})")
        with result.checkpoint.as_directory() as folder:
            with open(os.path.join(folder, ROUND_FILE), "rb") as f:
                payload = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        self.storage_filesystem.delete_dir(f"{self.storage_path}/{name}")
        rewind_state = payload["rewind_state"] if payload["rewind_state"] is not None else state.rewind_state
        carried = None if payload["carried"] is None else CarriedState(**payload["carried"])
        return TrainedRound(payload["metrics"], payload["trained"], rewind_state, payload["start_digest"], carried)
