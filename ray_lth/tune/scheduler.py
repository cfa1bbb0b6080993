"""MatchingScheduler: stops a group of IMP trajectories once its seed-mean no longer matches.

A thin Tune wrapper around ``ray_lth.matching.MatchingTracker`` (as AsyncHyperBandScheduler
wraps its _Bracket). Groups are the trials that differ only by seed (the ``group`` every result
carries). Round k's verdict is the seed-mean of round k, known once every seed has reported it;
once the tracker says the group stops, every seed of the group stops: a paused or waiting one at
once, a running one when it next reports. Stopped trials still show TERMINATED in Tune, so the
scheduler keeps its own record of those it ended before their last round.

Seeds that run ahead of their group's verdict go on (the verdict stops them when it arrives),
except when a seed of the same group waits for a core: then one seed that is ``MAX_LEAD`` rounds
ahead of it yields its core (PAUSE: Tune keeps its last round's checkpoint, and it resumes from
there). Without that, three seeds on two cores run as two, then one alone — a core idle for the
second half, and no verdict until the last seed catches up. Waiting trials resume furthest
behind first, those of a group already started before new groups.

Why 3 rounds, measured on the default sweep (3 seeds, 2 cores, Ray 2.60): a pause costs a
restart (new worker, imports, data, θ_p) of 15-25 s against 20-27 s a round, i.e. ~0.8 round.
With that cost a simulated sweep of 19 rounds keeps 0.79 of the cores busy with a lead of 1
(a pause every round), 0.88 with 2, 0.91 with 3, 0.93 with 8 and 0.75 with no pausing; a stop at
round 8 wastes 0.4, 2.2, 2.4, 7.7 and 20 rounds run past it. The real sweep with a lead of 3
kept 0.87-0.89 of both cores busy (six pauses; a machine shared with other jobs).
"""

from typing import Dict, Optional

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..matching import MatchingTracker
from ..naming import group_name
from .trial_errors import is_error_result

MAX_LEAD = 3  # rounds a seed may run ahead of a group-mate that waits for a core


class MatchingScheduler(FIFOScheduler):
    def __init__(self, tracker: MatchingTracker, metric: str = "metric", pause_ahead: bool = True):
        super().__init__()
        self.pause_ahead = pause_ahead  # off where nothing is ever stopped (transfer upstreams)
        self.tracker = tracker
        self.metric_key = metric
        self.stopped: Dict[str, dict] = {}  # trial name -> {group, round, stop_round}: ended before its last round

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if is_error_result(result):  # the trial ends itself (trial_errors.py)
            return TrialScheduler.CONTINUE
        # trials are keyed by name (unique per configuration), as in results.csv, so a trial that a
        # restored sweep re-creates under a new id is still the same seed of its group
        group, round_index, name = result["group"], int(result["round"]), str(trial)
        self.tracker.add(group, name, round_index, result["sparsity"], result[self.metric_key])
        has_more_rounds = round_index < int(trial.config.get("rounds", 0))
        stop_round = self.tracker.stop_round(group)
        if stop_round is not None:
            self._stop_waiting_group_mates(tune_controller, group, trial, stop_round)
            if has_more_rounds:
                self._record_stop(name, group, round_index, stop_round)
            return TrialScheduler.STOP
        if self.pause_ahead and has_more_rounds and self._group_mate_waits_behind(tune_controller, group, trial, round_index):
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller) -> Optional[Trial]:
        """The waiting trial furthest behind in a group that has started, else Tune's FIFO order."""
        if not self.pause_ahead:
            return super().choose_trial_to_run(tune_controller)
        waiting = [t for t in tune_controller.get_trials() if t.status in (Trial.PENDING, Trial.PAUSED)]
        in_started = [t for t in waiting if self.tracker.results.get(self._group(t))]
        if in_started:
            return min(in_started, key=self._last_round)
        return super().choose_trial_to_run(tune_controller)

    def _group_mate_waits_behind(self, tune_controller, group: str, trial, round_index: int) -> bool:
        """A group-mate waits for a core ``MAX_LEAD`` rounds or more behind ``trial``, and no other
        seed has yielded its core to it yet (two leaders yielding to one waiter would only swap)."""
        waiting = [other for other in tune_controller.get_trials() if other is not trial
                   and other.status in (Trial.PENDING, Trial.PAUSED) and self._group(other) == group]
        behind = [other for other in waiting if round_index - self._last_round(other) >= MAX_LEAD]
        return len(behind) > len(waiting) - len(behind)

    def _stop_waiting_group_mates(self, tune_controller, group: str, trial, stop_round: int) -> None:
        """A paused or waiting seed of a stopped group would only restart to be stopped: end it now
        (as HyperBand does). Running seeds are stopped when they next report."""
        for other in tune_controller.get_trials():
            if other is trial or self._group(other) != group:
                continue
            if other.status in (Trial.PENDING, Trial.PAUSED) or (other.status == Trial.RUNNING and other.is_saving):
                self._record_stop(str(other), group, self._last_round(other), stop_round)
                tune_controller.stop_trial(other)

    def _record_stop(self, name: str, group: str, round_index: int, stop_round: int) -> None:
        self.stopped.setdefault(name, {"group": group, "round": round_index, "stop_round": stop_round})

    def _last_round(self, trial) -> int:
        """The last round ``trial`` reported (from the tracker, so it survives a restored sweep); -1 if none."""
        return max(self.tracker.results.get(self._group(trial), {}).get(str(trial), {}), default=-1)

    @staticmethod
    def _group(trial) -> str:
        return group_name(trial.config)

    def debug_string(self) -> str:
        return (f"MatchingScheduler: {len(self.stopped)} trajectories ended before their last round "
                f"(their group's seed-mean stopped matching)")
