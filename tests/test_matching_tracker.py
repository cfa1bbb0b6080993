import pytest

from ray_lth.matching import MatchingTracker


def _feed(tracker, trial, metrics, group="g"):
    for k, m in enumerate(metrics):
        tracker.add(group, trial, k, 1 - 0.8**k, m)


def test_band_and_verdicts_wait_for_every_seed():
    tracker = MatchingTracker(seeds_per_group=3)
    _feed(tracker, "a", [0.90, 0.10, 0.10])
    _feed(tracker, "b", [0.92, 0.10])
    assert tracker.band("g") is None and tracker.stop_round("g") is None
    _feed(tracker, "c", [0.94])
    assert tracker.band("g").mean == pytest.approx(0.92)
    assert tracker.round_verdict("g", 0) is True
    assert tracker.round_verdict("g", 1) is None and tracker.stop_round("g") is None  # seed c has no round 1 yet
    tracker.add("g", "c", 1, 0.2, 0.10)
    assert tracker.round_verdict("g", 1) is False and tracker.stop_round("g") == 1


def test_one_noisy_seed_failing_alone_stops_nothing():
    tracker = MatchingTracker(seeds_per_group=3, patience=1)
    _feed(tracker, "a", [0.90, 0.95, 0.95, 0.94])
    _feed(tracker, "b", [0.90, 0.93, 0.94, 0.93])
    _feed(tracker, "c", [0.90, 0.86, 0.85, 0.86])  # fails the band (0.90) at every pruned round; the mean matches
    assert tracker.stop_round("g") is None
    assert [tracker.round_verdict("g", k) for k in range(4)] == [True, True, True, True]
    assert tracker.group_summary("g")["max_matching_sparsity"] == pytest.approx(1 - 0.8**3)


def test_patience_counts_consecutive_seed_mean_failures_and_a_recovery_resets_it():
    tracker = MatchingTracker(seeds_per_group=2, patience=2)
    _feed(tracker, "a", [0.90, 0.95, 0.50, 0.91, 0.50, 0.50])
    _feed(tracker, "b", [0.90, 0.95, 0.50, 0.91, 0.50])
    assert tracker.stop_round("g") is None  # rounds 2 and 4 failed, round 3 between them matched
    tracker.add("g", "b", 5, 0.67, 0.50)
    assert tracker.stop_round("g") == 5


def test_group_summary_reports_the_largest_matching_seed_mean_even_after_a_dip():
    tracker = MatchingTracker(seeds_per_group=2, patience=2)
    _feed(tracker, "a", [0.90, 0.91, 0.80, 0.95])
    _feed(tracker, "b", [0.90, 0.90, 0.95, 0.90])
    summary = tracker.group_summary("g")
    assert summary["dense_mean"] == pytest.approx(0.9) and summary["dense_std"] == 0.0
    # round 1: mean 0.905 matches; round 2: 0.875 fails; round 3: 0.925 matches again
    assert summary["max_matching_sparsity"] == pytest.approx(1 - 0.8**3)


def test_bad_tracker_settings_are_rejected():
    with pytest.raises(ValueError, match="seeds_per_group"):
        MatchingTracker(0)
    with pytest.raises(ValueError, match="patience"):
        MatchingTracker(1, patience=0)


def test_summary_ignores_rounds_that_only_a_seed_running_ahead_reached():
    tracker = MatchingTracker(seeds_per_group=2)
    _feed(tracker, "a", [0.90, 0.90, 0.95, 0.95])  # ran ahead to round 3
    _feed(tracker, "b", [0.90, 0.90])  # the group was stopped before b reached round 2
    assert tracker.group_summary("g")["max_matching_sparsity"] == pytest.approx(0.2)
    assert sorted(tracker.complete_rounds("g")) == [0, 1]
