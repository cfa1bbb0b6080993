"""Run a SweepSpace (a grid) or a TransferSpace (dependent trials) as a Ray Tune experiment and summarise the maximum matching sparsity.

Layout of one experiment, ``<storage>/<name>/``: Ray Tune's trial folders (each with a
checkpoint per round and ``trajectory/`` holding every round's mask), ``results.csv`` (one row
per trial and round), ``summary.csv``, ``timing.json`` (wall time and core utilisation) and
``tensorboard/``.

``storage`` is what Ray Tune's ``storage_path`` takes: a local or NFS path, or an object-store
URI (``s3://bucket/prefix``, ``gs://…``, options included: ``s3://bucket?endpoint_override=…``).
Ray gets it as given; everything this module writes goes through the same filesystem
(``ray_lth.storage``), so nothing lands in a local folder named after the URI.
"""

import csv
import dataclasses
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import ray
from ray import tune
from ray.tune import CLIReporter
from ray.tune.search.optuna import OptunaSearch

from ..analysis.report import write_report
from ..matching import MatchingTracker, answer_scope
from ..spaces import SweepSpace
from ..storage import Location, join_uri, location, storage_path_for_ray
from ..transfer import TransferSpace, replay_boundary_searches, transfer_verdicts
from .dependency import DependencySearcher
from ..naming import group_name, trial_name
from .console import RoundLines, StatusTable, quiet_ray_loggers
from .results import ResultsCallback, feed_tracker, read_results
from .scheduler import MatchingScheduler
from .tensorboard import TensorBoardCallback
from .data_parallel import WorkerResources
from .trainable import imp_trainable
from .trial_errors import fail_once, round_results_only, trial_failures

_MAX_FAILURES = 3
DATA_PARALLEL_TRIAL_CPUS = 0.01  # a data-parallel trial holds the trajectory and prunes: next to nothing
SPACE_FILE = "ray_lth_space.json"
TIMING_FILE = "timing.json"
TRANSFER_GROUP_FIELDS = ("task", "mask_label")  # what tells a transfer plan's groups apart


class SweepError(RuntimeError):
    pass


@dataclass
class SweepOutcome:
    experiment: Location  # <storage>/<name>, local or in an object store
    summary: List[dict]
    errors: List[str]
    transfer: Optional[dict] = None  # transfer_verdicts() of a TransferSpace
    report: Optional[Location] = None  # report/README.md, None if writing the report failed
    timing: dict = field(default_factory=dict)  # timing.json
    stopped_early: List[str] = field(default_factory=list)  # trials the scheduler ended before their last round
    group_fields: List[str] = field(default_factory=list)  # the summary's fields that tell its groups apart

    @property
    def experiment_dir(self) -> Optional[Path]:
        """The experiment folder on this machine; None when it is in an object store."""
        return self.experiment.local_path


def _distribution(spec):
    kind = spec[0]
    if kind == "choice":
        return tune.choice(list(spec[1]))
    return tune.loguniform(spec[1], spec[2]) if kind == "loguniform" else tune.uniform(spec[1], spec[2])


def trial_name_creator(trial) -> str:
    return trial_name(trial.config)


def trial_dirname_creator(trial) -> str:
    # the name alone, not the trial id: if a driver dies before Tune's experiment snapshot holds a
    # trial, the restored sweep creates it again with a new id, and it must find its own folder
    # (and the rounds it finished there) instead of starting over
    return trial_name(trial.config)


def trial_resources(space) -> dict:
    """What one trial reserves; a data-parallel trial only coordinates, its workers hold the rest."""
    if isinstance(space, SweepSpace) and space.workers_per_trial > 1:
        return {"cpu": DATA_PARALLEL_TRIAL_CPUS, "gpu": 0}
    return {"cpu": space.cpus_per_trial, "gpu": space.gpus_per_trial}


def check_resources(space) -> None:
    """Trials that ask for resources the cluster lacks would stay PENDING forever: say so now."""
    available = ray.cluster_resources()
    if isinstance(space, SweepSpace) and space.workers_per_trial > 1:
        workers = space.workers_per_trial
        for kind, per_worker, flag in (("GPU", space.gpus_per_worker, "--gpus-per-worker"),
                                       ("CPU", space.cpus_per_worker, "--cpus-per-worker")):
            needed = workers * per_worker + (DATA_PARALLEL_TRIAL_CPUS if kind == "CPU" else 0)
            if needed > available.get(kind, 0):
                raise SweepError(f"each trial runs {workers} workers of {per_worker:g} {kind} (and itself "
                                 f"{DATA_PARALLEL_TRIAL_CPUS} CPU): {needed:g} {kind} in all, but the Ray cluster has "
                                 f"{available.get(kind, 0):g}: lower --workers-per-trial or {flag}")
        return
    if space.gpus_per_trial > available.get("GPU", 0):
        raise SweepError(f"each trial asks for {space.gpus_per_trial} GPU but the Ray cluster has "
                         f"{available.get('GPU', 0)}: pass --gpus-per-trial 0 or connect to a cluster with GPUs")
    if space.cpus_per_trial > available.get("CPU", 0):
        raise SweepError(f"each trial asks for {space.cpus_per_trial} CPUs but the Ray cluster has "
                         f"{available.get('CPU', 0)}: lower --cpus-per-trial")


def run_sweep(space, storage, name: str, resume: bool = False, verbose: int = 1,
              max_concurrent: Optional[int] = None, launched_at: Optional[float] = None) -> SweepOutcome:
    """Run (or resume) the sweep; Ray must already be initialised (see launchers/sweep.py).

    A resumed sweep runs the space it was started with (saved in the experiment folder).
    ``verbose``: 0 silent, 1 this project's console (a line per round, a status table), 2 that
    and Ray's own output (its status table, INFO logs, a checkpoint line per round).
    ``launched_at`` (``time.time()`` when the launcher started) makes timing.json's total wall
    time include Ray's start and the θ_p pre-training."""
    launched_at = time.time() if launched_at is None else launched_at
    experiment = location(storage) / name
    started_before = (experiment / "tuner.pkl").exists()
    if started_before and not resume:
        raise SweepError(f"experiment {experiment} exists: pass --resume to continue it, or choose another --name")
    if resume and not started_before:
        raise SweepError(f"nothing to resume: {experiment} holds no experiment")
    space_file = experiment / SPACE_FILE
    if resume:
        saved = json.loads(space_file.read_text())  # the space it started with
        space = (TransferSpace if saved["kind"] == "transfer" else SweepSpace)(**saved["space"])
    else:
        kind = "transfer" if isinstance(space, TransferSpace) else "grid"
        space_file.write_text(json.dumps({"kind": kind, "space": dataclasses.asdict(space)}, indent=1))
    check_resources(space)

    plan = space.plan() if isinstance(space, TransferSpace) else None
    tracker = MatchingTracker(space.seeds_per_group, space.patience, plan.references if plan else None)
    fields = list(TRANSFER_GROUP_FIELDS) if plan else space.group_fields
    if verbose < 2:
        quiet_ray_loggers()
    workers = WorkerResources(space.cpus_per_worker, space.gpus_per_worker) if isinstance(space, SweepSpace) else None
    # a deterministic error ends a trial once, with one line (trial_errors.py); its error result
    # names Optuna's objective too (-inf), since Tune refuses a result without the searcher's metric
    objective = space.objective if plan is None and space.sample else None
    trainable = tune.with_resources(
        tune.with_parameters(fail_once(imp_trainable, objective), ray_logs=verbose >= 2, worker_resources=workers),
        trial_resources(space))
    if resume:
        # the scheduler and callbacks come back from the experiment's own state; the results
        # callback re-reads results.csv, so finished rounds and the dense bands survive
        # the experiment's own filesystem (with the URI's options, e.g. an S3 endpoint) and its path there
        tuner = tune.Tuner.restore(experiment.path, trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=None if experiment.is_local else experiment.fs)
    else:
        if verbose >= 2:  # Ray's own table, as Ray prints it
            reporter = CLIReporter(
                metric_columns={"round": "round", "sparsity": "sparsity", "metric": "metric", "matching": "matching"},
                parameter_columns=["task", "seed"] if plan else sorted(set(space.grid)), max_report_frequency=15,
                sort_by_metric=False)
        else:
            reporter = StatusTable(tracker, fields)
        console = [RoundLines(tracker, fields)] if verbose >= 1 else []
        if plan:
            # trials come from the searcher, which starts each transfer trial once its mask exists
            search = dict(search_alg=DependencySearcher(plan, join_uri(storage_path_for_ray(storage), name)), num_samples=-1)
            param_space = None
        elif space.sample:
            # Optuna's TPE over the sampled fields; each trial's objective is its own result
            search = dict(search_alg=OptunaSearch(metric=space.objective, mode="max"), num_samples=space.num_samples)
            param_space = {**space.fixed, **{k: v[0] for k, v in space.grid.items()},
                           **{k: _distribution(spec) for k, spec in space.sample.items()}}
        else:
            search = dict(num_samples=1)
            param_space = {**space.fixed, **{k: tune.grid_search(v) for k, v in space.grid.items()}}
        results_callback = ResultsCallback(experiment / "results.csv", tracker, fields)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                scheduler=MatchingScheduler(tracker, pause_ahead=plan is None), max_concurrent_trials=max_concurrent,
                trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator, **search),
            run_config=tune.RunConfig(
                name=name, storage_path=storage_path_for_ray(storage), verbose=verbose, progress_reporter=reporter,
                # a trial's error result carries no round: these read a round's fields
                callbacks=round_results_only([results_callback,
                                              TensorBoardCallback(experiment / "tensorboard"), *console]),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                failure_config=tune.FailureConfig(max_failures=_MAX_FAILURES)),
        )
    rows_before = read_results(experiment / "results.csv")
    tuning_started = time.time()
    grid = tuner.fit()
    tuning_wall = time.time() - tuning_started
    errors = trial_failures(grid)  # one line per failed trial: "trial <name> failed: <message>"
    # trials that completed (not cut off by an interruption) before their last round; a restored
    # sweep's callbacks are Tune's own copies, so there it counts every trial short of its last round
    completed = None if resume else results_callback.completed
    stopped_early = sorted(trial_name(r.config) for r in grid if r.error is None and r.metrics and "round" in r.metrics
                           and int(r.metrics["round"]) < int(r.config.get("rounds", 0))
                           and (completed is None or trial_name(r.config) in completed))
    # the verdicts come from results.csv alone, so they are the same after any resume
    final = MatchingTracker(space.seeds_per_group, space.patience, plan.references if plan else None)
    results = read_results(experiment / "results.csv")
    rows = list(results.values())
    feed_tracker(final, rows)
    planned = {}  # the rounds each group was given: a stop at its last one cut nothing
    for result in grid:
        group = group_name(result.config)
        planned[group] = max(planned.get(group, 0), int(result.config.get("rounds", 0)))
    summary = summarise(final, rows, fields, planned)
    write_summary(experiment / "summary.csv", summary)
    # this session's rounds only: a resumed sweep's earlier rounds ran in another wall time
    session_rows = [row for key, row in results.items() if rows_before.get(key) != row]
    timing = core_utilisation(session_rows, ray.cluster_resources().get("CPU", 0), tuning_wall,
                              time.time() - launched_at)
    (experiment / TIMING_FILE).write_text(json.dumps(timing, indent=1))
    transfer = transfer_verdicts(final, plan, space.rounds) if plan else None
    if transfer:
        write_summary(experiment / "transfer_summary.csv", transfer["rows"])
        if plan.search == "bisect":
            transfer["search"] = replay_boundary_searches(plan, final)
            write_summary(experiment / "max_matching_search.csv",
                          [{"task": task, **answer} for task, answer in transfer["search"].items()])
    return SweepOutcome(experiment, summary, errors, transfer, _report(experiment), timing, stopped_early, fields)


def core_utilisation(rows: List[dict], cores: float, tuning_wall: float, total_wall: float) -> dict:
    """Sum of the rounds' seconds ÷ (cores × tuning wall time): 1.0 when every core trained all along."""
    round_seconds = sum(float(r["round_seconds"]) for r in rows)
    return {"total_wall_s": round(total_wall, 1), "tuning_wall_s": round(tuning_wall, 1), "cores": cores,
            "rounds": len(rows), "round_seconds": round(round_seconds, 1),
            "core_utilisation": round(round_seconds / (cores * tuning_wall), 3) if cores and tuning_wall > 0 else None}


def _report(experiment) -> Optional[Location]:
    """Write ``report/`` (plots and tables); a failure here is logged, never raised: the sweep's
    results are in storage already and ``launchers/report.py`` can write the report again."""
    try:
        return write_report(experiment)
    except Exception as error:  # noqa: BLE001 - any plotting error must not lose a finished sweep
        print(f"ray_lth: the report was not written ({type(error).__name__}: {error}); "
              f"run: python launchers/report.py {experiment}", file=sys.stderr, flush=True)
        return None


def summarise(tracker: MatchingTracker, rows: List[dict], fields=(), planned_rounds=None) -> List[dict]:
    """Per group: the fields that tell it apart (``fields``), dense mean ± std over seeds, the
    largest sparsity whose seed-mean matches and what that answer covers (``max_matching_covers``:
    every round, or only up to the first run of ``patience`` failing rounds for a group the
    matching rule stopped before its last round of ``planned_rounds``)."""
    summary = []
    for group in tracker.groups():
        group_rows = [r for r in rows if r["group"] == group]
        verdicts = tracker.group_summary(group)
        entry = {"group": verdicts.pop("group"), **{f: group_rows[0].get(f, "") for f in fields if group_rows},
                 **verdicts}
        stop = tracker.stop_round(group)
        cut = stop is not None and stop < (planned_rounds or {}).get(group, float("inf"))
        entry["max_matching_covers"] = answer_scope(stop if cut else None, tracker.patience)
        entry["max_sparsity_run"] = max((float(r["sparsity"]) for r in group_rows), default=None)
        entry["trials"] = len({r["trial_name"] for r in group_rows})
        entry["rounds_run"] = len(group_rows)
        last_epochs = {}
        for r in group_rows:  # "epochs" is cumulative per trial: its largest value is what it spent
            last_epochs[r["trial_name"]] = max(last_epochs.get(r["trial_name"], 0), int(r["epochs"]))
        entry["epochs"] = sum(last_epochs.values())
        summary.append(entry)
    return summary


def write_summary(path, summary: List[dict]) -> None:
    """``summary`` as a CSV file at ``path`` (a local path or a storage Location), written atomically."""
    if not summary:
        return
    fieldnames = list(dict.fromkeys(key for row in summary for key in row))  # every key, first-seen order
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(summary)
    location(path).write_text(text.getvalue())
