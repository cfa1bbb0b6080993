"""Accuracy-vs-sparsity curves from results rows: mean ± std over seeds at every round.

A curve point is one round of a group (trajectories that differ only by seed); its std is the
sample std over the seeds that reached it (0 for one seed), and ``seeds`` says how many did,
so a point that a stopped seed never reached is visibly thinner, not silently flattering.
"""

import statistics
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

from ..matching import DenseBand, is_matching


@dataclass(frozen=True)
class CurvePoint:
    round: int
    sparsity: float
    mean: float
    std: float
    seeds: int


def curve_from_rows(rows: Iterable[Mapping[str, object]]) -> List[CurvePoint]:
    """Rows of one group (``round``, ``sparsity``, ``metric``) -> one point per round."""
    by_round: Dict[int, list] = {}
    for row in rows:
        by_round.setdefault(int(row["round"]), []).append((float(row["sparsity"]), float(row["metric"])))
    points = []
    for round_index, values in sorted(by_round.items()):
        metrics = [m for _, m in values]
        points.append(CurvePoint(round_index, statistics.fmean(s for s, _ in values), statistics.fmean(metrics),
                                 statistics.stdev(metrics) if len(metrics) > 1 else 0.0, len(metrics)))
    return points


def matching_boundary(points: List[CurvePoint], band: Optional[DenseBand]) -> Optional[CurvePoint]:
    """The point of largest sparsity whose seed-mean matches the band, counting only points every
    seed of the band reached (as the sweep's summary does); None if none matches."""
    if band is None:
        return None
    matching = [p for p in points if p.seeds >= band.seeds and is_matching(p.mean, band)]
    return max(matching, key=lambda p: p.sparsity) if matching else None
