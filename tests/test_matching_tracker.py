import pytest

from ray_lth.matching import MatchingTracker


def _feed(tracker, trial, metrics, group="g"):
    for k, m in enumerate(metrics):
        tracker.add(group, trial, k, 1 - 0.8**k, m)


def test_band_waits_for_every_seed_before_any_verdict():
    tracker = MatchingTracker(seeds_per_group=3)
    _feed(tracker, "a", [0.90, 0.10, 0.10])
    _feed(tracker, "b", [0.92])
    assert tracker.band("g") is None and not tracker.should_stop("g", "a")
    _feed(tracker, "c", [0.94])
    assert tracker.band("g").mean == pytest.approx(0.92)
    assert tracker.should_stop("g", "a") and tracker.verdict("g", "a", 1) is False


def test_patience_counts_consecutive_failures_and_a_recovery_resets_it():
    tracker = MatchingTracker(seeds_per_group=1, patience=2)
    _feed(tracker, "a", [0.9, 0.95, 0.5])
    assert not tracker.should_stop("g", "a")
    tracker.add("g", "a", 3, 0.488, 0.91)
    assert not tracker.should_stop("g", "a")
    tracker.add("g", "a", 4, 0.59, 0.5)
    tracker.add("g", "a", 5, 0.67, 0.5)
    assert tracker.should_stop("g", "a") and tracker.last_matching_round("g", "a") == 3


def test_group_summary_reports_the_largest_matching_mean():
    tracker = MatchingTracker(seeds_per_group=2)
    _feed(tracker, "a", [0.90, 0.91, 0.80])
    _feed(tracker, "b", [0.90, 0.90, 0.95])
    summary = tracker.group_summary("g")
    assert summary["dense_mean"] == pytest.approx(0.9) and summary["dense_std"] == 0.0
    assert summary["max_matching_sparsity"] == pytest.approx(0.2)  # round 1: mean 0.905 matches; round 2: 0.875 fails


def test_bad_tracker_settings_are_rejected():
    with pytest.raises(ValueError, match="seeds_per_group"):
        MatchingTracker(0)
    with pytest.raises(ValueError, match="patience"):
        MatchingTracker(1, patience=0)


def test_summary_ignores_sparsities_that_only_survivors_reached():
    tracker = MatchingTracker(seeds_per_group=2)
    _feed(tracker, "a", [0.90, 0.90, 0.95, 0.95])  # went on to round 3
    _feed(tracker, "b", [0.90, 0.90])  # stopped after round 1
    assert tracker.group_summary("g")["max_matching_sparsity"] == pytest.approx(0.2)
