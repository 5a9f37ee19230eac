"""PSI of two count vectors, its smoothing, its chi-square calibration and the status rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelops.drift import psi as psi_mod
from modelops.drift.psi import classify, degrees_of_freedom, p_value, psi
from modelops.drift.status import Thresholds


@pytest.mark.parametrize("scale", [1, 3, 1000])
def test_psi_matches_the_published_test_vector_at_any_sample_size(scale: int) -> None:
    # README: expected shares (0.4, 0.3, 0.3), actual (0.35, 0.25, 0.4) give 0.044561.
    expected, actual = np.array([40, 30, 30]) * scale, np.array([35, 25, 40]) * scale
    assert round(psi(expected, actual), 6) == 0.044561


def test_the_two_samples_may_differ_in_size() -> None:
    assert round(psi([400, 300, 300], [35, 25, 40]), 6) == 0.044561


def test_psi_is_zero_for_equal_distributions_and_symmetric() -> None:
    e, a = [20, 50, 30], [10, 60, 30]
    assert psi(e, e) == 0.0
    assert psi(e, a) == pytest.approx(psi(a, e))
    assert psi(e, a) > 0


def test_a_bin_empty_on_one_side_counts_as_half_a_row_of_that_sample() -> None:
    # Reference 50/50/0 of 100 rows: the empty bin is 0.5 / 100 there; current 40/50/10.
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 0.005) * math.log(0.1 / 0.005)
    assert psi([50, 50, 0], [40, 50, 10]) == pytest.approx(by_hand)
    # The other way round: the empty current bin is 0.5 / 200 of the current sample.
    by_hand = (0.5 - 0.4) * math.log(0.5 / 0.4) + (0.0025 - 0.1) * math.log(0.0025 / 0.1)
    assert psi([40, 50, 10], [100, 100, 0]) == pytest.approx(by_hand)


def test_a_bin_empty_in_both_samples_adds_nothing_whatever_the_sample_sizes() -> None:
    # Smoothing both sides would give 0.5/10000 vs 0.5/10 and a spurious PSI.
    assert psi([5000, 5000, 0], [5, 5, 0]) == 0.0
    assert psi([40, 0, 30, 30], [35, 0, 25, 40]) == psi([40, 30, 30], [35, 25, 40])


def test_psi_refuses_empty_samples_and_mismatched_bins() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        psi([0, 0], [1, 2])
    with pytest.raises(ValueError, match="one length"):
        psi([1, 2, 3], [1, 2])


def test_there_is_one_psi_and_no_proportion_epsilon() -> None:
    public = {n for n in vars(psi_mod) if not n.startswith("_")}
    assert "EPSILON" not in public and "psi_counts" not in public


def _no_drift(rng: np.random.Generator, n: int, m: int, runs: int) -> np.ndarray:
    """PSI and p-value of `runs` pairs of samples (n and m rows) of one 10-bin population."""
    shares = np.full(10, 0.1)
    out = np.empty((runs, 2))
    for i in range(runs):
        ref, cur = rng.multinomial(n, shares), rng.multinomial(m, shares)
        value = psi(ref, cur)
        out[i] = value, p_value(value, n, m, degrees_of_freedom(ref))
    return out


def test_small_windows_cross_psi_0_1_by_chance_about_a_third_of_the_time() -> None:
    # The premise of the significance test: 10 bins, 10k reference rows, 100-row windows, no drift.
    psi_p = _no_drift(np.random.default_rng(5), 10_000, 100, 3000)
    assert 0.28 < np.mean(psi_p[:, 0] > 0.1) < 0.42


@pytest.mark.parametrize("m", [300, 1000, 5000])
def test_p_values_under_no_drift_give_about_the_nominal_false_alarm_rate(m: int) -> None:
    # From min_rows (300) up the chi-square approximation holds to within a quarter or so.
    psi_p = _no_drift(np.random.default_rng(m), 24_000, m, 20_000)
    for level in (0.05, 0.01):
        rate = np.mean(psi_p[:, 1] < level)
        assert level * 0.7 < rate < level * 1.5, (level, rate)


@pytest.mark.parametrize(
    ("value", "p", "tests", "status"),
    [
        (0.30, 1e-9, 1, "significant"),
        (0.15, 1e-9, 1, "moderate"),
        (0.05, 1e-9, 1, "stable"),
        (0.30, 0.5, 1, "insufficient_data"),  # large, but a small sample makes it chance
        (0.15, 0.005, 1, "moderate"),
        (0.15, 0.005, 10, "insufficient_data"),  # alpha 0.01 shared by ten checks
    ],
)
def test_status_needs_both_size_and_significance(
    value: float, p: float, tests: int, status: str
) -> None:
    assert classify(value, p, Thresholds(alpha=0.01), tests) == status


def test_thresholds_refuse_inverted_levels() -> None:
    with pytest.raises(ValueError, match="moderate < significant"):
        Thresholds(moderate=0.3, significant=0.2)
