"""The automatic search for the maximum matching sparsity over independent sparsity levels.

Where every level can be evaluated on its own (transfer: every upstream round's mask already
exists), exhaustive evaluation trains every level × every seed. ``BoundarySearch`` instead
bisects over the levels with one probe seed a level (a probe goes where the line through the
metrics at the bracket's ends crosses the threshold: a curve falls about steadily near its
boundary), assuming matching is monotone (dense side matches, sparse side fails), then confirms
the pair it ends at with the seed-mean over every seed, and finally probes ``lookahead`` levels
past the boundary; where one matches on its seed-mean the curve recovered and the search goes on
past it, so the answer is the sparsest matching level it has seen. Level k is probed by seed
k mod n (of the seeds in the order given): a seed that scores above the others at every level (one
that fits a small embedded set perfectly) would, as the only probe seed, carry the bisection past
the boundary and leave a walk back. It asks for (level, seed) evaluations and is told their
metric, so the same object drives a synchronous loop (benchmarks) or a Tune searcher.

Its state is the results alone. The answer is bracketed by decided seed-mean verdicts: ``low``,
the sparsest level known to match on its seed-mean (the answer is never denser), and ``high``, the
densest level past it known to fail;
the bisection runs inside that bracket again after every result, each probe judged on its
seed-mean where that is decided, on the seeds evaluated there otherwise. A confirmation that
contradicts the probe seed therefore re-opens the bisection from what is known (a level probed
before is taken first: it narrows the interval for free) instead of walking level by level.
It saves evaluations where that cannot change the answer:
- the two levels the bisection ends at are confirmed one after the other, the one nearer the
  threshold first: where it contradicts its probe, the other is never confirmed;
- with ``metric_bounds`` (top-1, AP and mIoU lie in [0, 1]) a seed-mean is decided as soon as
  its remaining seeds could not change the verdict even scoring the worst or best possible,
  and the seeds of a level are asked for only as far as the bounds could not yet decide it (so
  with bounds a Tune searcher gets fewer fine-tunes to run at once);
- a probe's result counts toward its level's seed-mean.
Every answer rests on seed-mean verdicts over every seed (or one the bounds decide), so where
matching is monotone in the level the answer is the exhaustive scan's, whatever one seed does.

The answer states its confidence: the seeds used at the boundary level and its neighbour, and
whether any evaluation contradicted monotonicity (then the answer is flagged ``uncertain``: a
sparser level matched although a denser one failed, so a full scan might answer differently).
A dip or recovery at levels the search never evaluated cannot be seen.
"""

import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .matching import DenseBand, is_matching


@dataclass
class BoundaryAnswer:
    level: Optional[int]  # index of the sparsest matching level; None if even the densest fails
    seeds_at_boundary: int
    seeds_at_neighbour: int
    evaluations: int
    uncertain: bool
    reason: str


class BoundarySearch:
    def __init__(self, num_levels: int, seeds: Sequence[int], band: DenseBand, probe_seeds: int = 1,
                 lookahead: int = 1, metric_bounds: Optional[Tuple[float, float]] = None):
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if not 1 <= probe_seeds <= len(seeds):
            raise ValueError(f"probe_seeds must be in 1..{len(seeds)}, got {probe_seeds}")
        if metric_bounds is not None and not metric_bounds[0] < metric_bounds[1]:
            raise ValueError(f"metric_bounds must be (lowest, highest) with lowest < highest, got {metric_bounds}")
        self.num_levels = num_levels
        self.seeds = list(seeds)
        self.band = band
        self.probe_count = probe_seeds
        self.lookahead = lookahead  # probe-seed checks past the boundary, to catch a curve that recovers
        self.metric_bounds = metric_bounds  # the lowest and highest metric possible; None: unbounded
        self.results: Dict[Tuple[int, int], float] = {}

    def probe_seeds(self, level: int) -> List[int]:
        """The seeds that probe ``level``: they stride through the seeds with the level, so that
        a seed that scores above (or below) the others everywhere steers only some of the probes."""
        return [self.seeds[(level + j) % len(self.seeds)] for j in range(self.probe_count)]

    def tell(self, level: int, seed: int, metric: float) -> None:
        self.results[(level, seed)] = float(metric)

    def matches(self, level: int, seeds: Sequence[int]) -> Optional[bool]:
        """The verdict on the mean over ``seeds`` at ``level``, or None while one is missing."""
        values = [self.results.get((level, s)) for s in seeds]
        return None if None in values else is_matching(statistics.fmean(values), self.band)

    def decided(self, level: int) -> Optional[bool]:
        """The verdict on the seed-mean over every seed at ``level`` once the results in decide it
        (every seed in, or ``metric_bounds`` leave the missing seeds no way to change it); else None."""
        known = [self.results[(level, s)] for s in self.seeds if (level, s) in self.results]
        missing = len(self.seeds) - len(known)
        if missing == 0:
            return is_matching(statistics.fmean(known), self.band)
        if self.metric_bounds is None:
            return None
        lowest, highest = self.metric_bounds
        if is_matching((sum(known) + missing * lowest) / len(self.seeds), self.band):
            return True
        if not is_matching((sum(known) + missing * highest) / len(self.seeds), self.band):
            return False
        return None

    def requests(self) -> List[Tuple[int, int]]:
        """The (level, seed) evaluations needed next; empty when the search is done."""
        low, high = self._bounds()
        if high - low > 1:
            pair = self._locate(low, high)
            if isinstance(pair, list):
                return pair  # a probe
            # (low, high) is no confirmed pair, so one of the two the bisection ends at is unconfirmed:
            # the one nearer the threshold first, the likelier to contradict its probe
            unconfirmed = [lv for lv in pair if 0 <= lv < self.num_levels and self.decided(lv) is None]
            return self._more_seeds(min(unconfirmed, key=self._distance))
        beyond = range(high + 1, min(high + 1 + self.lookahead, self.num_levels))
        missing = [r for level in beyond for r in self._missing(level, self.probe_seeds(level))]
        if missing:
            return missing
        # the curve may recover past a failing level: a look-ahead probe that matches gets its
        # seed-mean; where that matches too, it becomes low and the search goes on past it
        recovering = [lv for lv in beyond if self.decided(lv) is None and self._estimate(lv) >= self.band.threshold]
        return self._more_seeds(recovering[0]) if recovering else []

    def _bounds(self) -> Tuple[int, int]:
        """The sparsest level whose seed-mean matches (-1: none yet), and the densest level past it
        whose seed-mean fails (num_levels: none yet). The answer is never denser than the first."""
        low = max((lv for lv in range(self.num_levels) if self.decided(lv)), default=-1)
        high = min((lv for lv in range(low + 1, self.num_levels) if self.decided(lv) is False),
                   default=self.num_levels)
        return low, high

    def _locate(self, low: int, high: int):
        """Bisection inside (low, high) on each probe's verdict (its seed-mean's once decided):
        the adjacent pair (matches, fails) it ends at, or the probe it needs first (a list)."""
        while high - low > 1:
            mid = self._next_probe(low, high)
            missing = self._missing(mid, self.probe_seeds(mid))
            if missing:
                return missing
            verdict = self.decided(mid)
            if verdict is None:
                verdict = is_matching(self._estimate(mid), self.band)
            low, high = (mid, high) if verdict else (low, mid)
        return low, high

    def _next_probe(self, low: int, high: int) -> int:
        """The level to probe inside (low, high): a level probed before, the one nearest the middle
        (it narrows the interval for free), else where the line through the metrics at both ends
        crosses the threshold (regula falsi), or the middle while an end has no metric yet."""
        probed = [lv for lv in range(low + 1, high) if any((lv, s) in self.results for s in self.seeds)]
        if probed:
            return min(probed, key=lambda lv: abs(2 * lv - low - high))
        at_low = self._estimate(low) if low >= 0 else None
        at_high = self._estimate(high) if high < self.num_levels else None
        if at_low is None or at_high is None or at_low <= at_high:
            return (low + high) // 2
        crossing = low + (high - low) * (at_low - self.band.threshold) / (at_low - at_high)
        # kept in the middle half of the bracket: one outlying probe would otherwise make it creep a
        # level at a time (regula falsi's slow side)
        quarter = (high - low) / 4
        crossing = min(max(crossing, low + quarter), high - quarter)
        return min(max(round(crossing), low + 1), high - 1)  # round() may land on an end

    def _estimate(self, level: int) -> float:
        """The mean over the seeds evaluated at ``level`` (at least the probe seeds)."""
        return statistics.fmean(self.results[(level, s)] for s in self.seeds if (level, s) in self.results)

    def _distance(self, level: int) -> float:
        return abs(self._estimate(level) - self.band.threshold)

    def _more_seeds(self, level: int) -> List[Tuple[int, int]]:
        """The next seeds to evaluate at ``level``: as many as can run before the bounds could
        decide its verdict (every missing seed where there are no bounds)."""
        missing = self._missing(level, self.seeds)
        if self.metric_bounds is None:
            return missing
        return missing[:self._seeds_before_decidable(level, len(missing))]

    def _seeds_before_decidable(self, level: int, missing: int) -> int:
        """The fewest more seeds after which, at best, the bounds decide the verdict at ``level``."""
        known = sum(self.results[(level, s)] for s in self.seeds if (level, s) in self.results)
        lowest, highest = self.metric_bounds
        for more in range(1, missing):
            rest = missing - more
            if (is_matching((known + more * highest + rest * lowest) / len(self.seeds), self.band)
                    or not is_matching((known + more * lowest + rest * highest) / len(self.seeds), self.band)):
                return more
        return missing

    def _missing(self, level: int, seeds: Sequence[int]) -> List[Tuple[int, int]]:
        return [(level, s) for s in seeds if (level, s) not in self.results]

    def answer(self) -> BoundaryAnswer:
        if self.requests():
            raise RuntimeError("the search is not finished: evaluate requests() first")
        contradictions = [
            (dense, sparse) for dense in range(self.num_levels) for sparse in range(dense + 1, self.num_levels)
            if self._probe_verdict(dense) is False and self._probe_verdict(sparse) is True
        ]
        low, high = self._bounds()
        level = low if low >= 0 else None
        count = lambda lv: sum((lv, s) in self.results for s in self.seeds)  # noqa: E731
        reason = ("monotone on every level evaluated" if not contradictions else
                  f"non-monotone: level {contradictions[0][1]} matched although level {contradictions[0][0]} failed")
        return BoundaryAnswer(level, count(level) if level is not None else 0,
                              count(high) if high < self.num_levels else 0,
                              len(self.results), bool(contradictions), reason)

    def _probe_verdict(self, level: int) -> Optional[bool]:
        seeds = [s for s in self.seeds if (level, s) in self.results]
        return self.matches(level, seeds) if seeds else None


def exhaustive_max_matching(metrics: Dict[Tuple[int, int], float], num_levels: int, seeds: Sequence[int],
                            band: DenseBand) -> Optional[int]:
    """The reference answer: the sparsest level whose mean over all seeds matches."""
    matching = [lv for lv in range(num_levels)
                if is_matching(statistics.fmean(metrics[(lv, s)] for s in seeds), band)]
    return max(matching) if matching else None
