"""Transfer of tickets as a plan of trials, and its verdicts (paper, section 4).

A ``TransferSpace`` says: run IMP on the pre-training task P (the *upstream*, one trajectory per
seed); at each listed upstream round k, fine-tune its mask m_P (sparsity 1 - 0.8^k) with θ_p on
every downstream task T (a *dependent* trial, started as soon as that round's mask exists); and
fine-tune the dense model on every T (the baseline each ticket on T is judged against).
Optionally also run IMP on each T itself: (m_T, θ_p), (m_T, θ_0), (m_T, θ_5%) (Figure 3).
No Ray here: ``ray_lth.tune.dependency`` runs the plan.
"""

from dataclasses import dataclass, field, replace
from typing import ClassVar, Dict, List, Tuple

from .config import ImpConfig
from .tasks import TASKS, task_options
from .boundary import BoundarySearch
from .matching import MatchingTracker, dense_band, is_matching, is_universal
from .naming import group_name
from .perturbation import MASK_PERTURBATIONS
from .resources import PerTrialResources

TASK_SPECIFIC_REWINDS = ("pretrained", "init", "early")
SEARCHES = ("exhaustive", "bisect")


@dataclass(frozen=True)
class Dependent:
    upstream: int  # index into TransferPlan.upstream
    round: int  # the upstream round whose mask (mask_round_KK) this trial fine-tunes
    config: dict
    rewind_from_upstream: bool = False  # restart from the upstream's saved θ_k% (rewind_file)


@dataclass(frozen=True)
class TransferPlan:
    upstream: List[dict]
    independent: List[dict]  # dense baselines and task-specific IMP trajectories
    dependents: List[Dependent]
    references: Dict[str, str]  # group -> the dense-baseline group it is judged against
    dense_groups: Dict[str, str]  # downstream task -> its dense-baseline group
    ticket_groups: Dict[str, Dict[int, str]]  # downstream task -> upstream round -> group
    rounds: List[int] = field(default_factory=list)
    seeds: List[int] = field(default_factory=list)
    search: str = "exhaustive"
    dense_index: Dict[tuple, int] = field(default_factory=dict)  # (task, seed) -> index in independent
    dependent_index: Dict[tuple, int] = field(default_factory=dict)  # (task, round, seed) -> index in dependents


def _applicable(overrides: Dict[str, object], task: str) -> Dict[str, object]:
    """The overrides that make sense for ``task``: all but other tasks' own options."""
    others = {option for name in TASKS.names() if name != task for option in task_options(name)}
    own = set(task_options(task)) if task in TASKS.names() else set()
    return {k: v for k, v in overrides.items() if k in own or k not in others}


@dataclass(frozen=True)
class TransferSpace(PerTrialResources):
    kind: ClassVar[str] = "transfer"
    launcher_flags: ClassVar[Tuple[str, ...]] = ("resume", "patience")
    group_fields: ClassVar[Tuple[str, ...]] = ("task", "mask_label")  # what tells the plan's groups apart

    description: str
    upstream: Dict[str, object]  # ImpConfig fields of IMP on the pre-training task
    downstream: Dict[str, Dict[str, object]]  # task -> its fine-tune settings (schedule, epochs, ...)
    rounds: List[int]  # upstream rounds whose masks transfer
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    task_specific: List[str] = field(default_factory=list)  # rewinds of IMP on each downstream task
    weights: str = "embedded"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    patience: int = 1_000  # never stop the upstream: every listed round's mask is needed
    # "exhaustive": every round x seed on every task; "bisect": BoundarySearch over the rounds
    # (bisection with one seed, all seeds at the boundary), once every mask exists
    search: str = "exhaustive"
    # section 5.2 baselines (Figure 8): IMP on the upstream task from each of ``perturbation_rewinds``
    # (θ_0 "init", θ_5% "early", θ_p "pretrained"), and at every listed round its mask perturbed
    # ("random", "complementary", "flip") and trained from the same rewind point on the same task
    perturbations: List[str] = field(default_factory=list)
    perturbation_rewinds: List[str] = field(default_factory=lambda: ["pretrained"])
    perturbation_fraction: float = 0.1

    @property
    def seeds_per_group(self) -> int:
        return len(self.seeds)

    @property
    def model(self) -> str:
        return str(self.upstream.get("model", "resnet20"))

    def needs_pretrained_weights(self) -> bool:
        return True  # every transferred ticket is fine-tuned from θ_p

    def prepare(self, cache_uri: str) -> "TransferSpace":
        return self

    def transfer_plan(self) -> "TransferPlan":
        return self.plan()

    def with_overrides(self, overrides: Dict[str, object]) -> "TransferSpace":
        """``--set`` for a transfer space: ``seed=[..]`` sets the seeds, ``rounds=[..]`` the
        transferred rounds, ``search=bisect`` the search; any other key applies to the upstream
        and every downstream task, except a task's own option (e.g. ``detector``), which applies
        only to the tasks that have it."""
        overrides = dict(overrides)
        seeds = overrides.pop("seed", self.seeds)
        rounds = overrides.pop("rounds", self.rounds)
        search = overrides.pop("search", self.search)
        perturbations = overrides.pop("perturbations", self.perturbations)
        perturbation_rewinds = overrides.pop("perturbation_rewinds", self.perturbation_rewinds)
        return replace(self, search=search, perturbations=list(perturbations),
                       perturbation_rewinds=list(perturbation_rewinds), seeds=list(seeds) if isinstance(seeds, list) else [seeds],
                       rounds=list(rounds) if isinstance(rounds, list) else [rounds],
                       upstream={**self.upstream, **_applicable(overrides, self.upstream.get("task", "shapes"))},
                       downstream={t: {**v, **_applicable(overrides, t)} for t, v in self.downstream.items()})

    def plan(self) -> TransferPlan:
        if not self.rounds or min(self.rounds) < 1:
            raise ValueError(f"rounds must list upstream rounds >= 1 (round k has sparsity 1-0.8^k), got {self.rounds}")
        if not self.downstream and not self.perturbations:
            raise ValueError("downstream must name at least one task (or perturbations a baseline)")
        bad = sorted(set(self.perturbations) - set(MASK_PERTURBATIONS[1:]))
        if bad:
            raise ValueError(f"perturbations {bad} not allowed; choose from {list(MASK_PERTURBATIONS[1:])}")
        bad = sorted(set(self.perturbation_rewinds) - set(TASK_SPECIFIC_REWINDS))
        if bad:
            raise ValueError(f"perturbation_rewinds {bad} not allowed; choose from {list(TASK_SPECIFIC_REWINDS)}")
        if self.perturbations and self.search != "exhaustive":
            raise ValueError("perturbation baselines run every round x seed: use search='exhaustive'")
        if self.search not in SEARCHES:
            raise ValueError(f"search={self.search!r} is not allowed; choose one of {list(SEARCHES)}")
        if sorted(set(self.rounds)) != list(self.rounds):
            raise ValueError(f"rounds must be increasing and distinct, got {self.rounds}")
        unknown = sorted(set(self.task_specific) - set(TASK_SPECIFIC_REWINDS))
        if unknown:
            raise ValueError(f"task_specific rewinds {unknown} not allowed; choose from {list(TASK_SPECIFIC_REWINDS)}")
        shared = {k: self.upstream[k] for k in ("model", "weights", "weights_format", "image_size") if k in self.upstream}
        upstream_task = self.upstream.get("task", "shapes")
        top_round = max(self.rounds)
        upstream = [{**self.upstream, "rounds": max(int(self.upstream.get("rounds", 0)), top_round), "seed": s}
                    for s in self.seeds]
        independent, dependents, references, dense_groups, ticket_groups = [], [], {}, {}, {}
        dense_index, dependent_index = {}, {}
        for task, settings in self.downstream.items():
            base = {**shared, **settings, "task": task, "rewind": "pretrained", "rounds": 0}
            dense_groups[task] = group_name({**base, "seed": 0})
            for s in self.seeds:
                dense_index[(task, s)] = len(independent)
                independent.append({**base, "seed": s})
            ticket_groups[task] = {}
            for k in self.rounds:
                ticket = {**base, "mask_label": f"m_{upstream_task}-r{k}"}
                ticket_groups[task][k] = group_name({**ticket, "seed": 0})
                references[ticket_groups[task][k]] = dense_groups[task]
                for i, s in enumerate(self.seeds):
                    dependent_index[(task, k, s)] = len(dependents)
                    dependents.append(Dependent(i, k, {**ticket, "seed": s}))
            for rewind in self.task_specific:
                imp = {**base, "rewind": rewind, "rounds": top_round}
                if rewind in ("init", "early"):
                    # the paper's θ_0 and θ_5%: random init, and 5 % of training from it (section 3)
                    imp.pop("weights", None)
                references[group_name({**imp, "seed": 0})] = dense_groups[task]
                independent += [{**imp, "seed": s} for s in self.seeds]
        self._plan_perturbations(upstream, dependents, references, upstream_task)
        return TransferPlan(upstream, independent, dependents, references, dense_groups, ticket_groups,
                            list(self.rounds), list(self.seeds), self.search, dense_index, dependent_index)

    def _plan_perturbations(self, upstream: List[dict], dependents: List[Dependent], references: Dict[str, str],
                            task: str) -> None:
        """Append, per perturbation rewind, its IMP upstream (reusing an identical one) and its
        perturbed-mask dependents; each is judged against its own upstream's dense round 0."""
        for rewind in self.perturbation_rewinds if self.perturbations else []:
            for seed in self.seeds:
                imp = {**self.upstream, "rewind": rewind, "seed": seed,
                       "rounds": max(int(self.upstream.get("rounds", 0)), max(self.rounds))}
                if rewind in ("init", "early"):
                    imp.pop("weights", None)  # θ_0 and θ_5% start from the random init (section 5.2)
                if imp not in upstream:
                    upstream.append(imp)
                index = upstream.index(imp)
                dense_group = group_name(imp)
                for k in self.rounds:
                    for kind in self.perturbations:
                        config = {**imp, "rounds": 0, "mask_perturbation": kind, "mask_label": f"m_{task}-r{k}-{kind}"}
                        if kind == "flip":
                            config["perturbation_fraction"] = self.perturbation_fraction
                        references[group_name(config)] = dense_group
                        dependents.append(Dependent(index, k, config, rewind_from_upstream=rewind == "early"))

    def validate(self) -> List[ImpConfig]:
        plan = self.plan()
        return [ImpConfig.from_dict(c) for c in plan.upstream + plan.independent + [d.config for d in plan.dependents]]


def transfer_verdicts(tracker: MatchingTracker, plan: TransferPlan, rounds: List[int]) -> dict:
    """Per downstream task: each transferred ticket's mean metric and verdict, the largest matching
    sparsity; and the largest sparsity that is matching on every task (universal)."""
    rows, best = [], {}
    for task, dense_group in plan.dense_groups.items():
        band = tracker.band(dense_group)
        for k in rounds:
            curve = tracker.curve(plan.ticket_groups[task][k])
            if not curve or band is None:
                rows.append({"task": task, "round": k, "sparsity": None, "mean": None, "seeds": 0,
                             "dense_mean": band.mean if band else None, "dense_std": band.std if band else None,
                             "matching": None})
                continue
            ((sparsity, (mean, seeds)),) = curve.items()
            matching = seeds >= band.seeds and is_matching(mean, band)
            rows.append({"task": task, "round": k, "sparsity": sparsity, "mean": mean, "seeds": seeds,
                         "dense_mean": band.mean, "dense_std": band.std, "matching": matching})
        matched = [r["sparsity"] for r in rows if r["task"] == task and r["matching"]]
        best[task] = max(matched) if matched else None
    universal = [r["sparsity"] for r in rows
                 if r["matching"] and is_universal({x["task"]: bool(x["matching"]) for x in rows if x["round"] == r["round"]})]
    return {"rows": rows, "max_matching_by_task": best, "max_universal_sparsity": max(universal) if universal else None}




def new_boundary_search(plan: TransferPlan, dense_metrics: Dict[int, float]) -> BoundarySearch:
    """The bisection over ``plan.rounds`` for one task, judged against its dense fine-tunes."""
    return BoundarySearch(len(plan.rounds), plan.seeds, dense_band([dense_metrics[s] for s in plan.seeds]))


def replay_boundary_searches(plan: TransferPlan, tracker: MatchingTracker) -> Dict[str, dict]:
    """Re-derive each task's bisection answer from finished results alone (so it is the same after
    any resume): drive a fresh BoundarySearch with the recorded metrics; a search whose next
    request has no result yet is reported unfinished."""
    answers = {}
    for task, dense_group in plan.dense_groups.items():
        dense = {int(trial.rsplit("seed", 1)[-1]): rounds[0][1]
                 for trial, rounds in tracker.results.get(dense_group, {}).items() if 0 in rounds}
        if len(dense) < len(plan.seeds):
            answers[task] = {"finished": False, "reason": "dense fine-tunes missing"}
            continue
        search = new_boundary_search(plan, dense)
        metrics = {}
        for level, k in enumerate(plan.rounds):
            for trial, rounds in tracker.results.get(plan.ticket_groups[task][k], {}).items():
                metrics[(level, int(trial.rsplit("seed", 1)[-1]))] = rounds[0][1]
        while requests := search.requests():
            missing = [r for r in requests if r not in metrics]
            if missing:
                break
            for level, seed in requests:
                search.tell(level, seed, metrics[(level, seed)])
        if search.requests():
            answers[task] = {"finished": False, "reason": f"evaluation {search.requests()[0]} missing"}
            continue
        answer = search.answer()
        round_k = plan.rounds[answer.level] if answer.level is not None else None
        sparsity = next(iter(tracker.curve(plan.ticket_groups[task][round_k]))) if round_k is not None else None
        answers[task] = {"finished": True, "round": round_k, "sparsity": sparsity,
                         "seeds_at_boundary": answer.seeds_at_boundary,
                         "seeds_at_neighbour": answer.seeds_at_neighbour, "fine_tunes": answer.evaluations,
                         "exhaustive_fine_tunes": len(plan.rounds) * len(plan.seeds),
                         "uncertain": answer.uncertain, "reason": answer.reason}
    return answers
