import statistics

import pytest

from ray_lth.matching import (dense_band, is_matching, is_universal, is_winning_ticket, max_matching_sparsity,
                              mean_by_sparsity)


def test_band_is_mean_minus_sample_std_over_seeds():
    band = dense_band([0.90, 0.92, 0.94])
    assert band.mean == pytest.approx(0.92)
    assert band.std == pytest.approx(statistics.stdev([0.90, 0.92, 0.94]))
    assert is_matching(0.92 - 0.0199, band) and not is_matching(0.92 - 0.0201, band)


def test_one_seed_is_equation_one():
    band = dense_band([0.8])
    assert band.std == 0.0
    assert is_matching(0.8, band) and not is_matching(0.7999, band)


def test_winning_ticket_needs_pretrained_weights():
    band = dense_band([0.8, 0.82])
    assert is_winning_ticket(0.81, band, "pretrained")
    assert not is_winning_ticket(0.81, band, "init")


def test_max_matching_sparsity_takes_the_largest_even_after_a_dip():
    band = dense_band([0.9])
    curve = {0.0: 0.9, 0.2: 0.91, 0.36: 0.89, 0.488: 0.905, 0.59: 0.85}
    assert max_matching_sparsity(curve, band) == 0.488
    assert max_matching_sparsity({0.2: 0.1}, band) is None


def test_universal_and_means():
    assert is_universal({"cifar10": True, "svhn": True})
    assert not is_universal({"cifar10": True, "svhn": False})
    with pytest.raises(ValueError):
        is_universal({})
    rows = [{"sparsity": 0.2, "metric": 0.5}, {"sparsity": 0.2, "metric": 0.7}, {"sparsity": 0.36, "metric": 0.4}]
    assert mean_by_sparsity(rows) == {0.2: pytest.approx(0.6), 0.36: 0.4}
