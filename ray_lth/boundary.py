"""The automatic search for the maximum matching sparsity over independent sparsity levels.

Where every level can be evaluated on its own (transfer: every upstream round's mask already
exists), exhaustive evaluation trains every level × every seed. ``BoundarySearch`` instead
bisects over the levels with one seed, assuming matching is monotone (dense side matches, sparse
side fails), then confirms the boundary with all seeds at the boundary and its sparser neighbour
(adaptive replicates; a probe within ``margin`` of the threshold gets every seed at once), moving
the boundary while the confirmation disagrees, and finally probes ``lookahead`` levels past the
boundary with one seed; where one matches (confirmed with every seed) the curve recovered, and
the bisection goes on past it, so the answer is the sparsest matching level it has seen. It asks for
(level, seed) evaluations and is told their metric, so the same object drives a synchronous loop
(benchmarks) or a Tune searcher.

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
                 lookahead: int = 1, margin: Optional[float] = None):
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if not 1 <= probe_seeds <= len(seeds):
            raise ValueError(f"probe_seeds must be in 1..{len(seeds)}, got {probe_seeds}")
        self.num_levels = num_levels
        self.seeds = list(seeds)
        self.band = band
        self.probe_seeds = self.seeds[:probe_seeds]
        self.lookahead = lookahead  # probe-seed checks past the boundary, to catch a curve that recovers
        # a probe whose mean lies within ``margin`` of the threshold is too close to call with few
        # seeds: that level gets every seed before the bisection moves (default: 2 dense stds)
        self.margin = 2 * band.std if margin is None else margin
        self.results: Dict[Tuple[int, int], float] = {}
        self.low, self.high = -1, num_levels  # invariant: level low matches (or -1), level high fails (or n)

    def tell(self, level: int, seed: int, metric: float) -> None:
        self.results[(level, seed)] = float(metric)

    def matches(self, level: int, seeds: Sequence[int]) -> Optional[bool]:
        """The verdict on the mean over ``seeds`` at ``level``, or None while one is missing."""
        values = [self.results.get((level, s)) for s in seeds]
        return None if None in values else is_matching(statistics.fmean(values), self.band)

    def requests(self) -> List[Tuple[int, int]]:
        """The (level, seed) evaluations needed next; empty when the search is done."""
        while True:
            if self.high - self.low > 1:  # bisection phase, with the probe seeds
                mid = (self.low + self.high) // 2
                verdict = self.matches(mid, self.probe_seeds)
                if verdict is None:
                    return self._missing(mid, self.probe_seeds)
                if self._too_close(mid):
                    missing = self._missing(mid, self.seeds)
                    if missing:
                        return missing
                    verdict = self.matches(mid, self.seeds)
                self.low, self.high = (mid, self.high) if verdict else (self.low, mid)
                continue
            # confirmation phase: all seeds at the boundary and at its sparser neighbour
            missing = [r for level in (self.low, self.high) if 0 <= level < self.num_levels
                       for r in self._missing(level, self.seeds)]
            if missing:
                return missing
            if self.low >= 0 and not self.matches(self.low, self.seeds):
                self.low, self.high = self.low - 1, self.low  # the boundary moves denser
                continue
            if self.high < self.num_levels and self.matches(self.high, self.seeds):
                self.low, self.high = self.high, self.high + 1  # ... or sparser
                continue
            beyond = range(self.high + 1, min(self.high + 1 + self.lookahead, self.num_levels))
            missing = [r for level in beyond for r in self._missing(level, self.probe_seeds)]
            if missing:
                return missing
            recovered = None
            for level in beyond:  # the curve may recover past a failing level: check with every seed
                if self.matches(level, self.probe_seeds):
                    missing = self._missing(level, self.seeds)
                    if missing:
                        return missing
                    if self.matches(level, self.seeds):
                        recovered = level
            if recovered is None:
                return []
            self.low, self.high = recovered, self.num_levels  # search on past the recovery

    def _too_close(self, level: int) -> bool:
        mean = statistics.fmean(self.results[(level, s)] for s in self.probe_seeds)
        return abs(mean - self.band.threshold) <= self.margin

    def _missing(self, level: int, seeds: Sequence[int]) -> List[Tuple[int, int]]:
        return [(level, s) for s in seeds if (level, s) not in self.results]

    def answer(self) -> BoundaryAnswer:
        if self.requests():
            raise RuntimeError("the search is not finished: evaluate requests() first")
        contradictions = [
            (dense, sparse) for dense in range(self.num_levels) for sparse in range(dense + 1, self.num_levels)
            if self._probe_verdict(dense) is False and self._probe_verdict(sparse) is True
        ]
        level = self.low if self.low >= 0 else None
        count = lambda lv: sum((lv, s) in self.results for s in self.seeds)  # noqa: E731
        reason = ("monotone on every level evaluated" if not contradictions else
                  f"non-monotone: level {contradictions[0][1]} matched although level {contradictions[0][0]} failed")
        return BoundaryAnswer(level, count(level) if level is not None else 0,
                              count(self.high) if self.high < self.num_levels else 0,
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
