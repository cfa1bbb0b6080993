"""Matching, winning and universal tickets (paper, section 3 and footnote 7).

A subnetwork is *matching* when its metric is at least the dense metric: with several seeds,
within one standard deviation of the dense mean (mean - std, footnote 7); with one seed,
Eq. (1) literally (metric >= dense metric). The std is the sample std (ddof=1) over seeds.
"""

import statistics
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence


@dataclass(frozen=True)
class DenseBand:
    mean: float
    std: float
    seeds: int

    @property
    def threshold(self) -> float:
        return self.mean - self.std


def dense_band(dense_metrics: Sequence[float]) -> DenseBand:
    values = [float(v) for v in dense_metrics]
    if not values:
        raise ValueError("dense_band needs the dense (round 0) metric of at least one seed")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return DenseBand(statistics.fmean(values), std, len(values))


def is_matching(metric: float, band: DenseBand) -> bool:
    return float(metric) >= band.threshold


def is_winning_ticket(metric: float, band: DenseBand, rewind: str) -> bool:
    """A matching subnetwork whose weights are the pre-trained θ_p (paper, section 3, item 2)."""
    return rewind == "pretrained" and is_matching(metric, band)


def is_universal(matching_by_task: Mapping[str, bool]) -> bool:
    """Universal: matching on every downstream task of the set (paper, section 3, item 3)."""
    if not matching_by_task:
        raise ValueError("is_universal needs at least one task")
    return all(matching_by_task.values())


def max_matching_sparsity(metric_by_sparsity: Mapping[float, float], band: DenseBand) -> Optional[float]:
    """The largest sparsity whose metric matches, or None if none does.

    Not "the last matching round before the first failure": the paper reports the largest
    sparsity that matches, and curves are not always monotone.
    """
    matching = [s for s, metric in metric_by_sparsity.items() if is_matching(metric, band)]
    return max(matching) if matching else None


def mean_by_sparsity(rows: Iterable[Mapping[str, float]], metric: str = "metric") -> Dict[float, float]:
    """Average a metric over seeds at each sparsity (rows hold 'sparsity' and ``metric``)."""
    groups: Dict[float, list] = {}
    for row in rows:
        groups.setdefault(round(float(row["sparsity"]), 6), []).append(float(row[metric]))
    return {s: statistics.fmean(v) for s, v in sorted(groups.items())}


def check_patience(patience: Optional[int]) -> None:
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be an integer >= 1, or None (every round runs), got {patience!r}")


def answer_scope(stop_round: Optional[int], patience: Optional[int]) -> str:
    """What a group's maximum matching sparsity covers: every round it was given, or, for a group
    the matching rule stopped, the rounds up to its first run of ``patience`` failing rounds (a
    later recovery, which the authors' every-round curves would show, was never trained)."""
    if stop_round is None:
        return "every round run"
    rounds = "round" if patience == 1 else "rounds"
    return f"up to the first boundary of {patience} failing {rounds} (stopped at round {stop_round})"


class MatchingTracker:
    """Per group of trajectories that differ only by seed: the dense band once every seed's
    round 0 is known, each round's verdict on the seed-mean, and when the group stops.

    Matching is a property of the seed-mean (footnote 7), and so is stopping: round k's verdict
    is known once every seed has reported round k, and the whole group stops once its seed-mean
    has failed ``patience`` pruned rounds in a row (``patience=None``: never, every round runs, as
    the authors ran them). A single noisy seed never ends a trajectory.
    Pure bookkeeping (no Ray): ``MatchingScheduler`` feeds it results and asks ``stop_round``.
    """

    def __init__(self, seeds_per_group: int, patience: Optional[int] = 1,
                 references: Optional[Mapping[str, str]] = None):
        """``references`` maps a group to the group whose round 0 is its dense baseline: a
        transferred ticket on task T is judged against the dense fine-tune on T, not itself."""
        if seeds_per_group < 1:
            raise ValueError(f"seeds_per_group must be >= 1, got {seeds_per_group}")
        check_patience(patience)
        self.seeds_per_group = seeds_per_group
        self.patience = patience
        self.references = dict(references or {})
        # group -> trial -> round -> (sparsity, metric)
        self.results: Dict[str, Dict[str, Dict[int, tuple]]] = {}

    def add(self, group: str, trial: str, round_index: int, sparsity: float, metric: float) -> None:
        self.results.setdefault(group, {}).setdefault(trial, {})[int(round_index)] = (float(sparsity), float(metric))

    def band(self, group: str) -> Optional[DenseBand]:
        """The dense band, or None while fewer than ``seeds_per_group`` round-0 results are in."""
        group = self.references.get(group, group)
        dense = [rounds[0][1] for rounds in self.results.get(group, {}).values() if 0 in rounds]
        return dense_band(dense) if len(dense) >= self.seeds_per_group else None

    def complete_rounds(self, group: str) -> Dict[int, tuple]:
        """round -> (sparsity, seed-mean metric) for the rounds every seed of the group reported.

        Rounds only some seeds reached (a seed that ran ahead, or ran past the group's stop) are
        left out: a mean over survivors would flatter the group."""
        by_round: Dict[int, list] = {}
        for rounds in self.results.get(group, {}).values():
            for round_index, entry in rounds.items():
                by_round.setdefault(round_index, []).append(entry)
        return {k: (statistics.fmean(s for s, _ in entries), statistics.fmean(m for _, m in entries))
                for k, entries in sorted(by_round.items()) if len(entries) >= self.seeds_per_group}

    def round_verdict(self, group: str, round_index: int) -> Optional[bool]:
        """Whether round ``round_index``'s seed-mean matches; None until the band and every seed's
        result of that round are in."""
        band = self.band(group)
        entry = self.complete_rounds(group).get(int(round_index))
        return None if band is None or entry is None else is_matching(entry[1], band)

    def stop_round(self, group: str) -> Optional[int]:
        """The round whose verdict ended the group — the last of ``patience`` pruned rounds in a row
        whose seed-mean failed — or None while the group goes on."""
        band = self.band(group)
        if band is None or self.patience is None:
            return None
        failures = 0
        for round_index, (_, mean) in self.complete_rounds(group).items():
            if round_index == 0:
                continue
            failures = 0 if is_matching(mean, band) else failures + 1
            if failures >= self.patience:
                return round_index
        return None

    def group_summary(self, group: str) -> dict:
        """Dense mean ± std and the largest sparsity whose seed-mean matches, over the rounds
        every seed reached (the largest, not the last before a failure: curves are not monotone)."""
        band = self.band(group)
        complete = {s: mean for s, mean in self.complete_rounds(group).values()}
        best = max_matching_sparsity(complete, band) if band else None
        return {"group": group, "dense_mean": band.mean if band else None, "dense_std": band.std if band else None,
                "seeds": band.seeds if band else 0, "max_matching_sparsity": best}

    def groups(self) -> list:
        return sorted(self.results)

    def curve(self, group: str) -> Dict[float, tuple]:
        """sparsity -> (mean metric over seeds, seeds) for one group."""
        by_sparsity: Dict[float, list] = {}
        for rounds in self.results.get(group, {}).values():
            for s, m in rounds.values():
                by_sparsity.setdefault(round(s, 6), []).append(m)
        return {s: (statistics.fmean(v), len(v)) for s, v in sorted(by_sparsity.items())}
