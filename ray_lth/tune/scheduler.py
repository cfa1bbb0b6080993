"""MatchingScheduler: stops an IMP trajectory once it no longer matches its dense band.

A thin Tune wrapper around ``ray_lth.matching.MatchingTracker`` (as AsyncHyperBandScheduler
wraps its _Bracket). Groups are the trials that differ only by seed (the ``group`` every result
carries). Verdicts wait until every configured seed of the group has reported round 0, so no
trajectory is ever stopped on a band from fewer seeds. Stopped trials still show TERMINATED in
Tune, so the scheduler keeps its own record of why and where each one stopped.

When a group has more seeds than free trial slots, its first seeds would otherwise run to the
end before the last seed's round 0 gives the band, and nothing could be stopped early. So while
a group's band is unknown and one of its seeds is still PENDING, a trial that reports is PAUSED
(Tune checkpoints it and frees its slot); FIFO order then starts the pending seed first and
resumes the paused trial from its round checkpoint afterwards.
"""

from typing import Dict

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..matching import MatchingTracker
from ..naming import group_name


class MatchingScheduler(FIFOScheduler):
    def __init__(self, tracker: MatchingTracker, metric: str = "metric", pause_for_band: bool = True):
        super().__init__()
        self.pause_for_band = pause_for_band  # off where nothing is ever stopped (transfer upstreams)
        self.tracker = tracker
        self.metric_key = metric
        self.stopped: Dict[str, dict] = {}  # trial name -> {group, round, last_matching_round}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        # trials are keyed by name (unique per configuration), as in results.csv, so a trial that a
        # restored sweep re-creates under a new id is still the same seed of its group
        group, round_index, name = result["group"], int(result["round"]), str(trial)
        self.tracker.add(group, name, round_index, result["sparsity"], result[self.metric_key])
        if self.tracker.should_stop(group, name):
            self.stopped[name] = {
                "group": group, "round": round_index,
                "last_matching_round": self.tracker.last_matching_round(group, name),
            }
            return TrialScheduler.STOP
        has_more_rounds = round_index < int(trial.config.get("rounds", 0))
        band_unknown = self.tracker.band(group) is None
        if self.pause_for_band and has_more_rounds and band_unknown and self._seed_waiting(tune_controller, group, trial):
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    @staticmethod
    def _seed_waiting(tune_controller, group: str, trial) -> bool:
        return any(other is not trial and other.status == Trial.PENDING and group_name(other.config) == group
                   for other in tune_controller.get_trials())

    def debug_string(self) -> str:
        return f"MatchingScheduler: {len(self.stopped)} trajectories stopped after they stopped matching"
