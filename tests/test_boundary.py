import itertools
import json
import random
import statistics
from pathlib import Path

import pytest

from ray_lth.boundary import BoundarySearch, exhaustive_max_matching
from ray_lth.matching import DenseBand, dense_band

SEEDS = [0, 1, 2]
BAND = dense_band([0.90, 0.90, 0.90])  # threshold 0.90


def _drive(search, table):
    """Answer every request from ``table`` until the search is done; no evaluation asked twice."""
    while requests := search.requests():
        assert len(set(requests)) == len(requests) and not set(requests) & set(search.results)
        for level, seed in requests:
            search.tell(level, seed, table[(level, seed)])
    return search.answer()


def _run(curve, probe_seeds=1, noise=None, metric_bounds=None):
    """Drive a search on a synthetic accuracy curve; returns (answer, full-scan answer)."""
    noise = noise or {}
    metric = lambda lv, s: curve[lv] + noise.get((lv, s), 0.0)  # noqa: E731
    search = BoundarySearch(len(curve), SEEDS, BAND, probe_seeds, metric_bounds=metric_bounds)
    _drive(search, {(lv, s): metric(lv, s) for lv, s in itertools.product(range(len(curve)), SEEDS)})
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
    with pytest.raises(ValueError, match="metric_bounds"):
        BoundarySearch(5, SEEDS, BAND, metric_bounds=(1.0, 0.0))


def _monotone_table(rng, levels, seeds, band, boundary, spread):
    """A table whose seed-means match up to ``boundary`` and fail past it, each seed scattered by up
    to ``spread`` around its level's mean (so one seed alone may say the opposite), inside [0, 1]."""
    table = {}
    for level in range(levels):
        gap = rng.choice([1e-6, rng.uniform(0, spread / 4), rng.uniform(0, 2 * spread)]) + 1e-9
        mean = band.threshold + (gap if level <= boundary else -gap)
        scatter = [rng.uniform(-spread, spread) for _ in seeds]
        offset = statistics.fmean(scatter)
        for seed, value in zip(seeds, scatter):
            table[(level, seed)] = mean + value - offset
    return table


def _random_setting(rng, max_levels: int, dense_range: tuple):
    """(levels, seeds, dense band) of a random case: 1..max_levels levels, 1..4 seeds, 3 dense scores."""
    levels, seeds = rng.randint(1, max_levels), list(range(rng.randint(1, 4)))
    return levels, seeds, dense_band([rng.uniform(*dense_range) for _ in range(3)])


@pytest.mark.parametrize("metric_bounds", [None, (0.0, 1.0)])
def test_every_probe_seed_answers_as_a_full_scan_wherever_the_seed_mean_is_monotone(metric_bounds):
    rng = random.Random(21)
    for _ in range(150):
        levels, seeds, band = _random_setting(rng, 12, (0.4, 0.6))
        boundary = rng.randint(-1, levels - 1)
        table = _monotone_table(rng, levels, seeds, band, boundary, spread=rng.choice([0.002, 0.02, 0.2]))
        scan = exhaustive_max_matching(table, levels, seeds, band)
        assert scan == (boundary if boundary >= 0 else None)
        for order, probe_seeds, lookahead in itertools.product(range(len(seeds)), range(1, len(seeds) + 1), (0, 1, 2)):
            probe_first = seeds[order:] + seeds[:order]
            search = BoundarySearch(levels, probe_first, band, probe_seeds, lookahead, metric_bounds)
            answer = _drive(search, table)
            assert answer.level == scan, (levels, seeds, boundary, order, probe_seeds, lookahead)
            assert answer.evaluations <= levels * len(seeds)


@pytest.mark.parametrize("metric_bounds", [None, (0.0, 1.0)])
def test_on_any_table_the_answer_is_a_level_whose_seed_mean_matches_and_whose_neighbour_fails(metric_bounds):
    rng = random.Random(4)
    for _ in range(300):
        levels, seeds, band = _random_setting(rng, 10, (0.45, 0.55))
        table = {(lv, s): rng.uniform(0.3, 0.7) for lv in range(levels) for s in seeds}  # no monotonicity at all
        mean_matches = [statistics.fmean(table[(lv, s)] for s in seeds) >= band.threshold for lv in range(levels)]
        for order in range(len(seeds)):
            answer = _drive(BoundarySearch(levels, seeds[order:] + seeds[:order], band, metric_bounds=metric_bounds),
                            table)
            if answer.level is None:
                assert not mean_matches[0]
            else:
                assert mean_matches[answer.level]
                assert answer.level == levels - 1 or not mean_matches[answer.level + 1]
            if answer.level != exhaustive_max_matching(table, levels, seeds, band):
                assert _non_monotone(mean_matches)  # a matching level past a failing one it never saw


def _non_monotone(matches):
    return any(not matches[dense] and matches[sparse]
               for dense in range(len(matches)) for sparse in range(dense + 1, len(matches)))


def test_a_confirmation_that_contradicts_the_probe_bisects_again_instead_of_walking():
    curve = [0.95] * 12  # every seed-mean matches ...
    # ... but level 5's probe seed (5 mod 3 = seed 2) fails it, the bisection's first probe, so it first looks denser
    answer, scan = _run(curve, noise={(5, 2): -0.30, (5, 0): 0.15, (5, 1): 0.15})
    assert answer.level == scan == 11
    # probes 5, 2, 3, 4, then every seed at 4 and 5; from 5 on, probes 8, 10, 11 and every seed at 11
    # (stepping up one level at a time with every seed, as the search did before, took 26)
    assert answer.evaluations == 13


def test_metric_bounds_decide_a_seed_mean_without_its_remaining_seeds():
    curve = [0.95] * 5 + [0.10] * 7  # level 5 collapses: no two seeds scoring 1.0 can lift its mean to 0.90
    answer, scan = _run(curve, metric_bounds=(0.0, 1.0))
    assert answer.level == scan == 4
    assert answer.seeds_at_boundary == 3 and answer.seeds_at_neighbour == 1
    unbounded, _ = _run(curve)
    assert unbounded.seeds_at_neighbour == 3 and unbounded.evaluations == answer.evaluations + 2


def _noisy_curve_table(rng, levels, seeds, boundary):
    """A falling accuracy curve crossing the threshold after ``boundary``, seeds scattered as much as
    the dense band (a single seed is often wrong near the boundary), as the benchmark's curves are."""
    std = rng.uniform(0.003, 0.01)
    band = dense_band([0.9 + rng.gauss(0, std) for _ in seeds])
    drop = rng.uniform(0.3, 1.5) * std  # per level, near the boundary
    means = [band.threshold + drop * (boundary + 0.5 - lv) for lv in range(levels)]
    return band, {(lv, s): means[lv] + rng.gauss(0, band.std) for lv in range(levels) for s in seeds}


def test_on_noisy_curves_with_a_middle_boundary_the_search_costs_under_0_40_of_a_full_scan():
    # measured here: mean 0.356, 10.0 % of the searches above 0.40; probing each bracket's middle
    # (plain bisection) 0.368 and 14.0 %; the search before the results became its state
    # (bisection, then every seed at the pair and a walk) 0.394 and 35.7 %
    rng = random.Random(7)
    levels, seeds, ratios = 10, [0, 1, 2], []
    while len(ratios) < 600:
        band, table = _noisy_curve_table(rng, levels, seeds, boundary=rng.randint(3, 6))
        if _non_monotone([statistics.fmean(table[(lv, s)] for s in seeds) >= band.threshold for lv in range(levels)]):
            continue  # the noise bent the seed-mean itself: no search short of a full scan is exact there
        scan = exhaustive_max_matching(table, levels, seeds, band)
        for order in range(len(seeds)):
            answer = _drive(BoundarySearch(levels, seeds[order:] + seeds[:order], band, metric_bounds=(0.0, 1.0)),
                            table)
            assert answer.level == scan
            ratios.append((len(seeds) + answer.evaluations) / (len(seeds) * (levels + 1)))  # dense fine-tunes in both
    assert statistics.fmean(ratios) <= 0.365
    assert sum(ratio > 0.40 for ratio in ratios) <= 0.12 * len(ratios)


def test_on_a_measured_table_with_a_seed_that_fits_every_level_each_probe_order_costs_under_0_40():
    # benchmarks/tables/shapes.json (resnet8_narrow on shapes, 2 epochs, 10 levels, 3 seeds): seed 1
    # scores 0.987..1.0 at every level, so as the only probe seed it passed every probe and the search
    # walked back from the last level (0.515 of a full scan); probing level k with seed k mod 3 it is
    # one probe in three
    saved = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "tables" / "shapes.json").read_text())
    table = {(lv, s): m for lv, s, m in saved["table"]}
    band, levels, seeds = DenseBand(*saved["dense"]), saved["setting"]["levels"], list(range(saved["setting"]["seeds"]))
    scan = exhaustive_max_matching(table, levels, seeds, band)
    assert scan == 6  # level 7 of 10: the boundary in the middle
    for order in range(len(seeds)):
        answer = _drive(BoundarySearch(levels, seeds[order:] + seeds[:order], band, metric_bounds=(0.0, 1.0)), table)
        assert answer.level == scan and not answer.uncertain
        assert (len(seeds) + answer.evaluations) / (len(seeds) * (levels + 1)) <= 0.40
