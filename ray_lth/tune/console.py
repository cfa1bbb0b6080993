"""What a person reads while a sweep runs: one line per finished round, a compact status table,
percent everywhere, and Ray's own chatter (checkpoint lines, token-auth warning, Tune's INFO logs)
kept out unless ``--verbose`` asks for it.

- ``RoundLines`` (a Tune callback): "trial, round, sparsity %, metric %, verdict" for every round
  of every trial, and one line per group and round once every seed has reported it (the
  seed-mean against the dense band: the verdict that decides matching);
- ``StatusTable`` (a Tune ``ProgressReporter``): every ``every_s`` seconds and at the end, one row per
  trial; a trial Tune has PAUSED shows as waiting for its group (its seeds' band), and only a
  trajectory that ended before its last round counts as stopped.
"""

import logging
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ray.tune import Callback, ProgressReporter
from ray.tune.experiment import Trial

from ..cli import format_table
from ..matching import MatchingTracker, is_matching
from ..naming import group_name
from .trial_errors import TRIAL_ERROR

# loggers whose INFO lines and warnings are Ray's own output, shown only with --verbose
RAY_DRIVER_LOGGERS = ("ray.tune", "ray.train", "ray._private.authentication")
RAY_WORKER_LOGGERS = ("ray.train", "ray.tune")  # "Checkpoint successfully created at: ..." per round


def quiet_ray_loggers(names: Sequence[str] = RAY_DRIVER_LOGGERS) -> None:
    """Raise the named Ray loggers to ERROR (in this process): errors still show."""
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_ray_worker() -> None:
    """Ray's ``worker_process_setup_hook`` (launchers/sweep.py): quiet from the worker's start, so
    also Tune's "Restored on ... from checkpoint" line, logged before the trainable runs."""
    quiet_ray_loggers(RAY_WORKER_LOGGERS)
    sys.unraisablehook = _unraisable_but_an_exit


def _unraisable_but_an_exit(unraisable) -> None:
    """Ray ends a finished trial's actor with SIGTERM, whose handler raises SystemExit; where that
    lands in a weakref or garbage-collector callback, Python prints it as an ignored exception with
    a traceback under the sweep's failure line. An intended exit: dropped; anything else printed."""
    if not issubclass(unraisable.exc_type, SystemExit):
        sys.__unraisablehook__(unraisable)


def pct(value) -> str:
    return "—" if value is None else f"{100 * float(value):.2f}"


def trial_label(config: dict, fields: Sequence[str]) -> str:
    """A short name: the fields that tell the groups apart, then the seed (``pruning=random seed1``);
    the trial name when no field does."""
    if not fields:
        return f"{group_name(config)}-seed{config.get('seed')}"
    return " ".join(f"{k}={config.get(k, '')}" for k in fields) + f" seed{config.get('seed')}"


def group_label(config: dict, fields: Sequence[str]) -> str:
    return " ".join(f"{k}={config.get(k, '')}" for k in fields) if fields else group_name(config)


def group_round_verdict(tracker: MatchingTracker, group: str, round_index: int) -> Optional[Tuple[float, bool]]:
    """(seed-mean, matching) of one round of a group once every seed has reported it and the dense
    band is known; None before. The group-level verdict: the seed-mean against mean − std."""
    verdict = tracker.round_verdict(group, round_index)
    return None if verdict is None else (tracker.complete_rounds(group)[round_index][1], verdict)


def seed_against_band(tracker: MatchingTracker, group: str, metric: float) -> Optional[bool]:
    """One seed's metric against its group's band (informative: the verdict is the seed-mean's)."""
    band = tracker.band(group)
    return None if band is None else is_matching(metric, band)


def ended_early(trial) -> bool:
    """A trajectory that finished without error before its last round: the scheduler stopped it."""
    last = (trial.last_result or {}).get("round")
    return trial.status == Trial.TERMINATED and last is not None and int(last) < int(trial.config.get("rounds", 0))


class RoundLines(Callback):
    def __init__(self, tracker: MatchingTracker, fields: Sequence[str], stream=None):
        self.tracker = tracker
        self.fields = list(fields)
        self.stream = stream
        self.announced: Dict[str, int] = {}  # group -> rounds whose group line is printed (0..n-1)

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        group, round_index = result["group"], int(result["round"])
        verdict = seed_against_band(self.tracker, group, result["metric"])
        if round_index == 0:
            said = "dense (round 0)"
        elif verdict is None:
            said = "band pending"
        else:
            said = "within band" if verdict else "below band"
        self._print(f"{trial_label(trial.config, self.fields):<28} round {round_index:>2}  sparsity "
                    f"{pct(result['sparsity']):>6} %  metric {pct(result['metric']):>6} %  {said}")
        self._group_lines(group, trial.config)

    def _group_lines(self, group: str, config: dict) -> None:
        band = self.tracker.band(group)
        if band is None:
            return
        label = group_label(config, self.fields)
        while True:  # rounds finish in order per seed; announce each group round once, in order
            next_round = self.announced.get(group, 0)
            if next_round == 0:
                self._print(f"  {label}: dense band {pct(band.mean)} ± {pct(band.std)} % over {band.seeds} seeds, "
                            f"matching means a seed-mean ≥ {pct(band.threshold)} %")
                self.announced[group] = 1
                continue
            verdict = group_round_verdict(self.tracker, group, next_round)
            if verdict is None:
                return
            mean, matching = verdict
            sparsity = next(rounds[next_round][0] for rounds in self.tracker.results[group].values()
                            if next_round in rounds)
            self._print(f"  {label}: round {next_round} ({pct(sparsity)} % sparse) seed-mean {pct(mean)} % "
                        f"{'MATCHES' if matching else 'does NOT match'} (≥ {pct(band.threshold)} %)")
            self.announced[group] = next_round + 1


class StatusTable(ProgressReporter):
    def __init__(self, tracker: MatchingTracker, fields: Sequence[str], every_s: float = 30.0, stream=None):
        self.tracker = tracker
        self.fields = list(fields)
        self.every_s = every_s
        self.stream = stream
        self._last = 0.0
        self._start = time.time()

    def setup(self, start_time=None, **kwargs):
        self._start = start_time or time.time()
        self._last = time.time()  # the first table after a full interval: the round lines come first

    def should_report(self, trials, done=False) -> bool:
        return done or time.time() - self._last >= self.every_s

    def report(self, trials, done, *sys_info) -> None:
        self._last = time.time()
        print(format_status(trials, self.tracker, self.fields, time.time() - self._start),
              file=self.stream or sys.stdout, flush=True)


def status_word(trial) -> str:
    last = trial.last_result or {}
    if trial.status == Trial.PAUSED:
        return "waiting for its group"
    if trial.status == Trial.PENDING and "round" in last:
        return "waiting for a CPU"  # paused earlier, resumes after its last round
    if trial.status == Trial.TERMINATED and TRIAL_ERROR in last:
        return "failed"  # ended by a deterministic error (trial_errors.py)
    if trial.status == Trial.TERMINATED:
        return f"stopped after round {last.get('round')}" if ended_early(trial) else "finished"
    return {Trial.RUNNING: "running", Trial.PENDING: "pending", Trial.ERROR: "error"}.get(trial.status,
                                                                                          trial.status.lower())


def format_status(trials: List, tracker: MatchingTracker, fields: Sequence[str], elapsed: float) -> str:
    rows = []
    for trial in sorted(trials, key=lambda t: trial_label(t.config, fields)):
        last = trial.last_result or {}
        has_round = "round" in last
        verdict = seed_against_band(tracker, last["group"], last["metric"]) if has_round else None
        rows.append([trial_label(trial.config, fields), status_word(trial),
                     f"{last['round'] if has_round else '-'}/{trial.config.get('rounds')}",
                     pct(last.get("sparsity")), pct(last.get("metric")),
                     "" if verdict is None or not last.get("round") else ("within band" if verdict else "below band")])
    counts: Dict[str, int] = {}
    for trial in trials:
        word = status_word(trial)
        word = "stopped early" if word.startswith("stopped") else word
        counts[word] = counts.get(word, 0) + 1
    order = ("running", "waiting for its group", "waiting for a CPU", "pending", "finished", "stopped early", "failed",
             "error")
    header = (f"== {int(elapsed) // 60} min {int(elapsed) % 60:02d} s: "
              + ", ".join(f"{counts[w]} {w}" for w in order if counts.get(w)) + " ==")
    return header + "\n" + format_table(["trial", "status", "round", "sparsity %", "metric %", "last round"], rows)


# how the end of a run names each pruning method's subnetworks
ARM_NAMES = {"global": "IMP tickets", "layerwise": "layer-wise IMP tickets", "random": "random masks"}


def arms_sentence(summary: List[dict]) -> Optional[str]:
    """"IMP tickets match up to X %, random masks up to Y %" when the groups differ by ``pruning``
    alone (one group per method); None otherwise. A group whose every round matched says so:
    its boundary lies beyond the sparsities it ran."""
    by_method = {s.get("pruning"): s for s in summary if s.get("pruning")}
    if len(by_method) < 2 or len(by_method) != len(summary):
        return None
    parts = []
    for index, (method, s) in enumerate(sorted(by_method.items(), key=lambda kv: kv[0] != "global")):
        best = s["max_matching_sparsity"]
        beyond = best is not None and abs(float(best) - float(s.get("max_sparsity_run") or -1)) < 1e-4
        end = " (every round matched: the boundary lies beyond)" if beyond else ""
        verb = "match up to" if index == 0 else "up to"
        parts.append(f"{ARM_NAMES.get(method, method)} {verb} {pct(best)} %{end}")
    return (", ".join(parts) + " sparsity (the largest sparsity whose seed-mean stays within the dense band, "
            "mean − std).")


def stopped_sentence(stopped_early: Sequence[str]) -> str:
    if not stopped_early:
        return "no trajectory was stopped before its last round"
    return (f"{len(stopped_early)} trajectories stopped before their last round once they no longer matched: "
            + ", ".join(stopped_early))
