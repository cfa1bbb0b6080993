import itertools

import pytest

from ray_lth.boundary import BoundarySearch, exhaustive_max_matching
from ray_lth.matching import dense_band

SEEDS = [0, 1, 2]
BAND = dense_band([0.90, 0.90, 0.90])  # threshold 0.90


def _run(curve, probe_seeds=1, noise=None):
    """Drive a search on a synthetic accuracy curve; returns (answer, full-scan answer)."""
    noise = noise or {}
    metric = lambda lv, s: curve[lv] + noise.get((lv, s), 0.0)  # noqa: E731
    search = BoundarySearch(len(curve), SEEDS, BAND, probe_seeds)
    while True:
        requests = search.requests()
        if not requests:
            break
        for level, seed in requests:
            search.tell(level, seed, metric(level, seed))
    table = {(lv, s): metric(lv, s) for lv, s in itertools.product(range(len(curve)), SEEDS)}
    return search.answer(), exhaustive_max_matching(table, len(curve), SEEDS, BAND)


@pytest.mark.parametrize("boundary", range(-1, 12))
def test_bisection_equals_a_full_scan_on_every_monotone_curve(boundary):
    curve = [0.95 if lv <= boundary else 0.80 for lv in range(12)]
    answer, scan = _run(curve)
    assert answer.level == scan == (boundary if boundary >= 0 else None)
    assert not answer.uncertain
    assert answer.evaluations <= 14  # the full scan needs 36


def test_replicates_move_a_boundary_one_noisy_seed_got_wrong():
    curve = [0.95] * 6 + [0.80] * 6
    # seed 0 alone (the probe) wrongly passes level 6; the mean over three seeds fails it
    answer, scan = _run(curve, noise={(6, 0): 0.15})
    assert answer.level == scan == 5
    assert answer.seeds_at_boundary == 3 and answer.seeds_at_neighbour == 3


def test_non_monotone_curve_is_flagged_uncertain():
    curve = [0.95, 0.95, 0.95, 0.80, 0.95, 0.95, 0.80, 0.80]  # a dip at level 3, recovery at 4..5
    answer, scan = _run(curve)
    assert answer.level == scan == 5  # the look-ahead saw the recovery and the search went on past it
    assert answer.uncertain and "level 4 matched although level 3 failed" in answer.reason  # ... and says so


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="probe_seeds"):
        BoundarySearch(5, SEEDS, BAND, probe_seeds=4)
    with pytest.raises(ValueError, match="num_levels"):
        BoundarySearch(0, SEEDS, BAND)


def test_a_probe_close_to_the_threshold_gets_every_seed_at_once():
    band = dense_band([0.90, 0.91, 0.92])  # threshold 0.90, std 0.01 -> margin 0.02
    search = BoundarySearch(8, SEEDS, band)
    (level, seed), = search.requests()
    search.tell(level, seed, 0.905)  # 0.005 above the threshold: too close to call on one seed
    assert sorted(search.requests()) == [(level, 1), (level, 2)]
