"""One Ray Tune trial = one IMP trajectory.

After every round the trial reports round, sparsity, metric(s) and epochs, with a lean
checkpoint: ``trajectory.json`` (the records and a reference to the rewind state, verified by
digest on resume) and the mask the next round trains under (bit-packed, checksummed); never a
copy of θ_p (``TrajectoryState.save_checkpoint``). It also keeps a durable copy of the trajectory
in ``<trial storage>/trajectory/``, where every round's mask stays (checkpoint retention never
touches it) and a captured θ_k% is written once. On (re)start it resumes from the most advanced
*valid* state among ``tune.get_checkpoint()`` and that copy; a corrupt round is reported by
file name and the trial restarts from the round before it.
"""

import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import ray
from ray import tune

from ..config import ImpConfig
from ..device import use_cpus
from ..imp import run_trajectory
from ..experiment_layout import STATE_FILE, TRAJECTORY_DIR
from ..trajectory_state import TrajectoryState
from ..naming import group_name, trial_name
from ..progress import EpochProgressPrinter
from ..storage import Location, location, on_filesystem
from .console import RAY_WORKER_LOGGERS, quiet_ray_loggers
from .data_parallel import DATA_PARALLEL_DIR, DataParallelRounds, WorkerResources
from .trial_errors import UpstreamFailedError

UPSTREAM_FAILED = "upstream_failed"  # set by DependencySearcher when a transfer trial cannot start


def _candidate_states(folder, label: str, all_rounds: bool) -> List[tuple]:
    """(next_round, label, folder) for the rounds a saved folder could resume from: every round
    for the durable copy (it keeps every mask), the newest only for a Tune checkpoint."""
    try:
        newest = TrajectoryState.peek_next_round(folder)
    except ValueError as error:
        if (location(folder) / STATE_FILE).exists():  # a fresh trial has none: nothing to say
            print(f"ray_lth: {label} unusable: {error}", file=sys.stderr, flush=True)
        return []
    return [(k, label, folder) for k in (range(newest, 0, -1) if all_rounds else [newest])]


def resume_state(durable: Location, checkpoint_dir: Optional[Path]) -> Optional[TrajectoryState]:
    """The most advanced state that loads (its masks, trajectory.json and a captured θ_k%, read
    from the durable copy, all intact); each unusable one is reported by file name."""
    candidates = _candidate_states(durable, "trajectory copy", all_rounds=True)
    if checkpoint_dir is not None:
        candidates += _candidate_states(checkpoint_dir, "checkpoint", all_rounds=False)
    for next_round, label, folder in sorted(candidates, key=lambda c: -c[0]):
        try:
            return TrajectoryState.load(folder, next_round, rewind_folder=durable)
        except ValueError as error:  # MaskFileError is a ValueError
            print(f"ray_lth: {label} for round {next_round} unusable, trying the round before: {error}",
                  file=sys.stderr, flush=True)
    return None


def _round_metrics(base: dict, config: ImpConfig, records: list, bookkeeping: float) -> dict:
    record = records[-1]
    dense = records[0].metric
    # the trial's own verdict, Eq. (1) against its round 0: the objective of an Optuna search
    own_best = max(r.sparsity for r in records if r.metric >= dense)
    return {**base, **{f"m_{k}": v for k, v in record.metrics.items()}, "round": record.round,
            "sparsity": record.sparsity, "nominal_sparsity": config.sparsity_after(record.round),
            "metric": record.metric, "epochs": record.epochs, "round_seconds": record.seconds,
            "bookkeeping_seconds": bookkeeping, "own_max_matching_sparsity": own_best}


def _report(metrics: dict, state: TrajectoryState) -> None:
    with tempfile.TemporaryDirectory(prefix="ray_lth_round_") as tmp:
        state.save_checkpoint(tmp)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def imp_trainable(config: dict, ray_logs: bool = True, worker_resources: Optional[WorkerResources] = None) -> None:
    """``ray_logs=False`` keeps Ray's INFO lines (a checkpoint line per round) out of the console.
    ``worker_resources``: what each Ray Train worker of a data-parallel trial (workers_per_trial > 1) holds."""
    if UPSTREAM_FAILED in config:
        raise UpstreamFailedError(config[UPSTREAM_FAILED])
    if not ray_logs:
        quiet_ray_loggers(RAY_WORKER_LOGGERS)
    imp_config = ImpConfig.from_dict(config)
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU")  # sizes the data loaders
    threads = use_cpus(cpus)  # torch's threads: the trial's CPUs, however torch was imported
    storage = tune.get_context().get_storage()
    # a path inside Ray's storage filesystem (an object store on a cluster): never a local Path
    trial_dir = on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
    durable = trial_dir / TRAJECTORY_DIR
    checkpoint = tune.get_checkpoint()
    acknowledged = 0  # rounds the driver is known to have received (its checkpoint says so)
    if checkpoint is not None:
        with checkpoint.as_directory() as checkpoint_dir:
            state = resume_state(durable, Path(checkpoint_dir))
            try:
                acknowledged = TrajectoryState.peek_next_round(checkpoint_dir)
            except ValueError:
                acknowledged = 0
    else:
        state = resume_state(durable, None)
    # the scope and carry-over as resolved (the task's own unless the space named them): params.json has the space's
    base = {"group": group_name(config), "seed": imp_config.seed, "rewind_scope": imp_config.rewind_scope,
            "carry_optimizer": imp_config.carry_optimizer, "trial_fs_path": str(trial_dir),
            "node_id": ray.get_runtime_context().get_node_id(), "torch_threads": threads}
    if state is not None and state.next_round > acknowledged:
        # rounds saved durably whose report may have died with a worker or driver: report them
        # again (results.csv keeps one row per round), the last one with the state to resume from
        for count in range(acknowledged + 1, state.next_round + 1):
            records = state.records[:count]
            metrics = _round_metrics(base, imp_config, records, 0.0)
            if count < state.next_round:
                tune.report(metrics)
            else:
                _report(metrics, state)
    bookkeeping = 0.0
    progress = EpochProgressPrinter(trial_name(config))
    round_runner = None
    if imp_config.workers_per_trial > 1:
        if worker_resources is None:
            raise ValueError(f"workers_per_trial={imp_config.workers_per_trial}: data-parallel trials run in grid "
                             f"spaces (the grid kind), whose cpus_per_worker / gpus_per_worker their workers hold")
        round_runner = DataParallelRounds(worker_resources, trial_dir.fs, (trial_dir / DATA_PARALLEL_DIR).path)
    for result in run_trajectory(imp_config, state, progress=progress, round_runner=round_runner, cpus=cpus):
        started = time.perf_counter()
        result.state.save(durable)
        _report(_round_metrics(base, imp_config, result.state.records, bookkeeping), result.state)
        # the cost of this round's save + report is known only now: it goes with the next result
        bookkeeping = time.perf_counter() - started
