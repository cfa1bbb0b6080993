"""Run an IMP experiment as a Ray Tune experiment and summarise the maximum matching sparsity:
``run_grid`` (a ``SweepSpace``: a grid or Optuna's samples) and ``run_transfer`` (a
``TransferSpace``: dependent trials), the runners ``spaces.SPACE_KINDS`` names, share everything
but how trials come to Tune (``TrialSource``). ``run_sweep`` runs any kind of space by its runner.

The experiment's files: ``experiment_layout.py``. ``storage`` is what Ray Tune's
``storage_path`` takes: a local or NFS path, or an object-store URI (``s3://bucket/prefix``,
``gs://…``, options included: ``s3://bucket?endpoint_override=…``). Ray gets it as given;
everything this module writes goes through the same filesystem (``ray_lth.storage``), so nothing
lands in a local folder named after the URI.
"""

import csv
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

from .. import experiment_layout as layout
from ..analysis.report import write_report
from ..matching import MatchingTracker, answer_scope
from ..naming import group_name, trial_name
from ..resources import unmet_need
from ..spaces import runner_of, space_from_json, space_to_json
from ..storage import Location, join_uri, location, storage_path_for_ray
from ..transfer import replay_boundary_searches, transfer_verdicts
from .console import RoundLines, StatusTable, quiet_ray_loggers
from .data_parallel import WorkerResources
from .dependency import DependencySearcher
from .outcome_text import sweep_text
from .results import ResultsCallback, feed_tracker, read_results
from .scheduler import MatchingScheduler
from .tensorboard import TensorBoardCallback
from .trainable import imp_trainable
from .trial_errors import fail_once, round_results_only, trial_failures

_MAX_FAILURES = 3


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

    def text(self) -> str:
        return sweep_text(self)


@dataclass
class TrialSource:
    """How a kind's trials come to Tune: a param space (grid, Optuna) or a searcher (transfer)."""

    search: dict  # TuneConfig's search_alg / num_samples
    param_space: Optional[dict]
    parameter_columns: List[str]  # Ray's own table (--verbose)
    references: Optional[dict] = None  # group -> the dense group it is judged against (transfer)
    objective: Optional[str] = None  # Optuna's metric: a failed trial's error result must name it
    pause_ahead: bool = True  # the scheduler pauses seeds that run ahead (off where nothing stops)


def run_sweep(space, storage, name: str, resume: bool = False, verbose: int = 1,
              max_concurrent: Optional[int] = None, launched_at: Optional[float] = None):
    """Run (or resume) any kind of space with its runner (``spaces.SPACE_KINDS``); Ray must
    already be initialised (see launchers/sweep.py). ``verbose``: 0 silent, 1 this project's
    console (a line per round, a status table), 2 that and Ray's own output. ``launched_at``
    (``time.time()`` when the launcher started) makes timing.json's total wall time include
    Ray's start and the θ_p pre-training."""
    return runner_of(space)(space, storage, name, resume=resume, verbose=verbose, max_concurrent=max_concurrent,
                            launched_at=launched_at)


def run_grid(space, storage, name: str, resume: bool = False, verbose: int = 1,
             max_concurrent: Optional[int] = None, launched_at: Optional[float] = None) -> SweepOutcome:
    """A grid: one trial per grid point, or Optuna's TPE over the sampled fields (``num_samples``
    trials, each maximising its own ``objective``)."""
    experiment, space = open_experiment(space, storage, name, resume)
    if space.sample:
        source = TrialSource(dict(search_alg=OptunaSearch(metric=space.objective, mode="max"),
                                  num_samples=space.num_samples),
                             {**space.fixed, **{k: v[0] for k, v in space.grid.items()},
                              **{k: _distribution(spec) for k, spec in space.sample.items()}},
                             sorted(set(space.grid)), objective=space.objective)
    else:
        source = TrialSource(dict(num_samples=1),
                             {**space.fixed, **{k: tune.grid_search(v) for k, v in space.grid.items()}},
                             sorted(set(space.grid)))
    workers = WorkerResources(space.cpus_per_worker, space.gpus_per_worker)
    outcome, _ = _run_tracked(space, experiment, storage, name, source, workers, resume, verbose, max_concurrent,
                              launched_at)
    outcome.report = _report(experiment)
    return outcome


def run_transfer(space, storage, name: str, resume: bool = False, verbose: int = 1,
                 max_concurrent: Optional[int] = None, launched_at: Optional[float] = None) -> SweepOutcome:
    """A transfer plan: the searcher starts each dependent trial once its upstream mask exists;
    then each task's verdicts (and the bisection's answers under ``search="bisect"``)."""
    experiment, space = open_experiment(space, storage, name, resume)
    plan = space.plan()
    source = TrialSource(dict(search_alg=DependencySearcher(plan, join_uri(storage_path_for_ray(storage), name)),
                              num_samples=-1), None, ["task", "seed"], references=plan.references,
                         pause_ahead=False)
    outcome, final = _run_tracked(space, experiment, storage, name, source, None, resume, verbose, max_concurrent,
                                  launched_at)
    outcome.transfer = transfer_verdicts(final, plan, space.rounds)
    write_summary(experiment / layout.TRANSFER_SUMMARY_FILE, outcome.transfer["rows"])
    if plan.search == "bisect":
        outcome.transfer["search"] = replay_boundary_searches(plan, final)
        write_summary(experiment / layout.SEARCH_FILE,
                      [{"task": task, **answer} for task, answer in outcome.transfer["search"].items()])
    outcome.report = _report(experiment)
    return outcome


def open_experiment(space, storage, name: str, resume: bool):
    """(experiment, space): a new experiment saves its space; a resumed one runs the space it was
    started with. Refuses to start over an experiment, or to resume none; checks the resources."""
    experiment = location(storage) / name
    started_before = (experiment / layout.TUNER_STATE_FILE).exists()
    if started_before and not resume:
        raise SweepError(f"experiment {experiment} exists: pass --resume to continue it, or choose another --name")
    if resume and not started_before:
        raise SweepError(f"nothing to resume: {experiment} holds no experiment")
    space_file = experiment / layout.SPACE_FILE
    if resume:
        space = space_from_json(json.loads(space_file.read_text()))
    else:
        space_file.write_text(json.dumps(space_to_json(space), indent=1))
    check_resources(space)
    return experiment, space


def check_resources(space) -> None:
    """Trials that ask for resources the cluster lacks would stay PENDING forever: say so now."""
    message = unmet_need(space.resource_needs(), ray.cluster_resources())
    if message:
        raise SweepError(message)


def _run_tracked(space, experiment: Location, storage, name: str, source: TrialSource,
                 workers: Optional[WorkerResources], resume: bool, verbose: int, max_concurrent: Optional[int],
                 launched_at: Optional[float]):
    """Fit the experiment, then its summary and timing from results.csv: (outcome, the tracker of
    every result, for a kind's own verdicts)."""
    launched_at = time.time() if launched_at is None else launched_at
    fields = list(space.group_fields)
    if verbose < 2:
        quiet_ray_loggers()
    # a deterministic error ends a trial once, with one line (trial_errors.py); its error result
    # names Optuna's objective too (-inf), since Tune refuses a result without the searcher's metric
    trainable = tune.with_resources(
        tune.with_parameters(fail_once(imp_trainable, source.objective), ray_logs=verbose >= 2,
                             worker_resources=workers),
        space.trial_resources())
    if resume:
        # the scheduler and callbacks come back from the experiment's own state; the results
        # callback re-reads results.csv, so finished rounds and the dense bands survive
        tuner, results_callback = _restored_tuner(experiment, trainable), None
    else:
        tracker = MatchingTracker(space.seeds_per_group, space.patience, source.references)
        results_callback = ResultsCallback(experiment / layout.RESULTS_FILE, tracker, fields)
        tuner = _new_tuner(trainable, source, tracker, results_callback, fields, experiment, storage, name, verbose,
                           max_concurrent)
    rows_before = read_results(experiment / layout.RESULTS_FILE)
    tuning_started = time.time()
    grid = tuner.fit()
    tuning_wall = time.time() - tuning_started
    # trials that completed (not cut off by an interruption) before their last round; a restored
    # sweep's callbacks are Tune's own copies, so there it counts every trial short of its last round
    stopped = _stopped_early(grid, None if results_callback is None else results_callback.completed)
    results = read_results(experiment / layout.RESULTS_FILE)  # the verdicts come from results.csv alone
    final, summary = _summary(space, experiment, grid, source.references, fields, list(results.values()))
    timing = _timing(experiment, rows_before, results, tuning_wall, launched_at)
    outcome = SweepOutcome(experiment, summary, trial_failures(grid), None, None, timing, stopped, fields)
    return outcome, final


def _new_tuner(trainable, source: TrialSource, tracker: MatchingTracker, results_callback: ResultsCallback,
               fields: List[str], experiment: Location, storage, name: str, verbose: int,
               max_concurrent: Optional[int]) -> tune.Tuner:
    if verbose >= 2:  # Ray's own table, as Ray prints it
        reporter = CLIReporter(
            metric_columns={"round": "round", "sparsity": "sparsity", "metric": "metric", "matching": "matching"},
            parameter_columns=source.parameter_columns, max_report_frequency=15, sort_by_metric=False)
    else:
        reporter = StatusTable(tracker, fields)
    console = [RoundLines(tracker, fields)] if verbose >= 1 else []
    return tune.Tuner(
        trainable,
        param_space=source.param_space,
        tune_config=tune.TuneConfig(
            scheduler=MatchingScheduler(tracker, pause_ahead=source.pause_ahead), max_concurrent_trials=max_concurrent,
            # a finished trial's process runs the next one of the same resources: a transfer sweep's
            # many short fine-tunes skip a process start and torch's import each (bisection test: 95 -> 38-48 s)
            reuse_actors=True,
            trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator, **source.search),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path_for_ray(storage), verbose=verbose, progress_reporter=reporter,
            # a trial's error result carries no round: these read a round's fields
            callbacks=round_results_only([results_callback,
                                          TensorBoardCallback(experiment / layout.TENSORBOARD_DIR), *console]),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=_MAX_FAILURES)))


def _restored_tuner(experiment: Location, trainable) -> tune.Tuner:
    # the experiment's own filesystem (with the URI's options, e.g. an S3 endpoint) and its path there
    return tune.Tuner.restore(experiment.path, trainable, resume_unfinished=True, resume_errored=True,
                              storage_filesystem=None if experiment.is_local else experiment.fs)


def _stopped_early(grid, completed: Optional[set]) -> List[str]:
    return sorted(trial_name(r.config) for r in grid if r.error is None and r.metrics and "round" in r.metrics
                  and int(r.metrics["round"]) < int(r.config.get("rounds", 0))
                  and (completed is None or trial_name(r.config) in completed))


def _summary(space, experiment: Location, grid, references: Optional[dict], fields: List[str], rows: List[dict]):
    """(tracker, summary) of results.csv's ``rows``, so they are the same after any resume."""
    final = MatchingTracker(space.seeds_per_group, space.patience, references)
    feed_tracker(final, rows)
    planned = {}  # the rounds each group was given: a stop at its last one cut nothing
    for result in grid:
        group = group_name(result.config)
        planned[group] = max(planned.get(group, 0), int(result.config.get("rounds", 0)))
    summary = summarise(final, rows, fields, planned)
    write_summary(experiment / layout.SUMMARY_FILE, summary)
    return final, summary


def _timing(experiment: Location, rows_before: dict, results: dict, tuning_wall: float, launched_at: float) -> dict:
    """timing.json of this session's rounds only: a resumed sweep's earlier rounds ran in another wall time."""
    session_rows = [row for key, row in results.items() if rows_before.get(key) != row]
    timing = core_utilisation(session_rows, ray.cluster_resources().get("CPU", 0), tuning_wall,
                              time.time() - launched_at)
    (experiment / layout.TIMING_FILE).write_text(json.dumps(timing, indent=1))
    return timing


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
