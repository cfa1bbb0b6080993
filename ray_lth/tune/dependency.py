"""DependencySearcher: runs a TransferPlan, starting each transfer trial as soon as the upstream
round whose mask it fine-tunes exists, not after the whole upstream trajectory.

Tune polls ``suggest`` (with ``num_samples=-1``): the upstream trajectories and the independent
trials (dense baselines, task-specific IMP) come first; a dependent trial is suggested once its
upstream has reported round k-1, after which ``mask_round_KK`` (the mask round k trains under)
is on storage; ``None`` while none is ready; ``FINISHED`` once every trial is out. A dependent
whose upstream failed, or ended before reaching round k, is still suggested, carrying the reason:
the trial fails at once with a message naming the upstream trial.

With ``search="bisect"`` the dependents are not all run: per task, once its dense fine-tunes have
given the band, a BoundarySearch asks for (round, seed) fine-tunes one step at a time and the
searcher suggests exactly those (each still waits for its mask), finishing when every task's
search has its answer.
"""

import pickle
from typing import Dict, Optional

from ray.tune.search import Searcher

from ..naming import trial_name
from ..boundary import BoundarySearch
from ..storage import join_uri
from ..experiment_layout import MASK_FILE, REWIND_FILE, TRAJECTORY_DIR
from ..transfer import TransferPlan, new_boundary_search
from .trainable import UPSTREAM_FAILED
from .trial_errors import TRIAL_ERROR, is_error_result


class DependencySearcher(Searcher):
    def __init__(self, plan: TransferPlan, experiment_uri: str):
        super().__init__()
        self.plan = plan
        self.experiment_uri = experiment_uri  # <storage>/<name> as a URI (options kept) or a local path
        self.plain = list(plan.upstream) + list(plan.independent)
        self.next_plain = 0
        self.role: Dict[str, tuple] = {}  # trial_id -> ("upstream"|"independent"|"dependent", index)
        self.upstream_round: Dict[int, int] = {}  # upstream index -> last round reported
        self.upstream_path: Dict[int, str] = {}
        self.upstream_ended: Dict[int, Optional[str]] = {}  # index -> None (finished) or an error text
        self.issued: set = set()
        # search="bisect": per task, the dense metrics per seed, then a BoundarySearch over the rounds
        self.dense_metrics: Dict[str, Dict[int, float]] = {}
        self.searches: Dict[str, BoundarySearch] = {}
        self.in_flight: set = set()
        self.issue_order: list = []  # (dependent index, upstream round reported when issued), for tests and logs

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        if self.next_plain < len(self.plain):
            config = self.plain[self.next_plain]
            index = self.next_plain
            self.next_plain += 1
            self.role[trial_id] = ("upstream", index) if index < len(self.plan.upstream) else (
                "independent", index - len(self.plan.upstream))
            return dict(config)
        if self.plan.search == "bisect":
            return self._suggest_bisect(trial_id)
        for index, dependent in enumerate(self.plan.dependents):
            if index in self.issued:
                continue
            config = self._ready(dependent)
            if config is not None:
                self.issued.add(index)
                self.issue_order.append((index, self.upstream_round.get(dependent.upstream, -1)))
                self.role[trial_id] = ("dependent", index)
                return config
        return Searcher.FINISHED if len(self.issued) == len(self.plan.dependents) else None

    def _suggest_bisect(self, trial_id: str):
        finished = True
        for task in self.plan.dense_groups:
            search = self.searches.get(task)
            if search is None:
                finished = False  # the task's dense band is not known yet
                continue
            for level, seed in search.requests():
                finished = False
                index = self.plan.dependent_index[(task, self.plan.rounds[level], seed)]
                if index in self.issued:
                    continue  # already running
                config = self._ready(self.plan.dependents[index])
                if config is not None:
                    self.issued.add(index)
                    self.in_flight.add(index)
                    self.issue_order.append((index, self.upstream_round.get(self.plan.dependents[index].upstream, -1)))
                    self.role[trial_id] = ("dependent", index)
                    return config
        return Searcher.FINISHED if finished and not self.in_flight else None

    def _record_bisect(self, role: tuple, result: Optional[dict], error: bool) -> None:
        metric = float("-inf") if error or not result or "metric" not in result else float(result["metric"])
        if role[0] == "independent":
            keys = [key for key, i in self.plan.dense_index.items() if i == role[1]]
            if keys:
                (task, seed), = keys
                self.dense_metrics.setdefault(task, {})[seed] = metric
                if len(self.dense_metrics[task]) == len(self.plan.seeds):
                    self.searches[task] = new_boundary_search(self.plan, self.dense_metrics[task])
        elif role[0] == "dependent":
            dependent = self.plan.dependents[role[1]]
            task = dependent.config["task"]
            # a failed fine-tune counts as not matching, so the search moves on
            self.searches[task].tell(self.plan.rounds.index(dependent.round), dependent.config["seed"], metric)
            self.in_flight.discard(role[1])

    def _ready(self, dependent) -> Optional[dict]:
        up = dependent.upstream
        upstream_name = trial_name(self.plan.upstream[up])
        if self.upstream_round.get(up, -1) >= dependent.round - 1 and up in self.upstream_path:
            # the upstream trial's durable copy, as a URI the trial's node can open (an object
            # store's options, e.g. its endpoint, kept): the experiment's URI and the trial's folder
            trajectory = join_uri(self.experiment_uri, self.upstream_path[up].rstrip("/").rsplit("/", 1)[-1],
                                  TRAJECTORY_DIR)
            config = {**dependent.config, "mask_file": join_uri(trajectory, MASK_FILE.format(dependent.round))}
            if dependent.rewind_from_upstream:
                config["rewind_file"] = join_uri(trajectory, REWIND_FILE)  # the upstream's θ_k%
            return config
        if up in self.upstream_ended:
            error = self.upstream_ended[up]
            why = (f"upstream trial {upstream_name} failed: {error}" if error else
                   f"upstream trial {upstream_name} ended at round {self.upstream_round.get(up, -1)}, "
                   f"before the mask of round {dependent.round} existed")
            return {**dependent.config, UPSTREAM_FAILED: why}
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        role = self.role.get(trial_id)
        if role and role[0] == "upstream" and not is_error_result(result):
            self.upstream_round[role[1]] = max(self.upstream_round.get(role[1], -1), int(result["round"]))
            self.upstream_path[role[1]] = result["trial_fs_path"]

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        role = self.role.get(trial_id)
        if role and role[0] == "upstream":
            if result and "round" in result:
                self.on_trial_result(trial_id, result)
            failed = result[TRIAL_ERROR] if result and is_error_result(result) else None
            self.upstream_ended[role[1]] = "the trial errored (see its error.txt)" if error else failed
        elif role and self.plan.search == "bisect":
            self._record_bisect(role, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
