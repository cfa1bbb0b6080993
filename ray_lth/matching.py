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
