"""PSI, its smoothing, its chi-square calibration, the status rule and the frozen profile."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pytest

from modelops import drift
from modelops.errors import SchemaError
from modelops.params import DataParams
from modelops.schema import infer_and_validate


def test_psi_matches_the_published_test_vector() -> None:
    assert round(drift.psi([0.4, 0.3, 0.3], [0.35, 0.25, 0.4]), 6) == 0.044561


def test_psi_is_zero_for_equal_distributions_and_symmetric() -> None:
    e, a = [0.2, 0.5, 0.3], [0.1, 0.6, 0.3]
    assert drift.psi(e, e) == 0.0
    assert drift.psi(e, a) == pytest.approx(drift.psi(a, e))
    assert drift.psi(e, a) > 0


def test_psi_replaces_an_empty_proportion_by_the_stated_epsilon() -> None:
    eps = drift.EPSILON
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - eps) * math.log(0.1 / eps)
    assert eps == 1e-4
    assert drift.psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(by_hand)


def test_psi_of_counts_treats_an_empty_bin_as_half_a_row() -> None:
    reference, current = [50, 50, 0], [40, 50, 10]
    e = np.array([50, 50, 0.5]) / 100
    a = np.array([40, 50, 10]) / 100
    assert drift.psi_counts(reference, current) == pytest.approx(
        float(np.sum((a - e) * np.log(a / e)))
    )


def test_a_bin_empty_in_both_samples_adds_nothing_whatever_the_sample_sizes() -> None:
    # Smoothing both sides would give 0.5/10000 vs 0.5/10 and a spurious PSI.
    assert drift.psi_counts([5000, 5000, 0], [5, 5, 0]) == 0.0


def test_numeric_bins_are_right_closed_with_open_outer_bins_and_a_missing_bin() -> None:
    edges = np.array([1.0, 2.0])
    values = np.array([-np.inf, 1.0, 1.0001, 2.0, 3.0, np.inf, np.nan])
    # (-inf, 1] gets -inf and 1; (1, 2] gets 1.0001 and 2; (2, inf) gets 3 and inf; one missing.
    assert drift.bin_numeric(values, edges).tolist() == [2, 2, 2, 1]


def test_categorical_bins_count_known_unseen_and_missing_values() -> None:
    values = np.array(["a", "b", "a", "zzz", None, np.nan, 3.0, "3"], dtype=object)
    counts, unseen, missing = drift.count_categorical(values, ["a", "b", "3"])
    assert counts.tolist() == [2, 1, 2]  # the code 3.0 is the category "3", as in the schema
    assert (unseen, missing) == (1, 2)


def test_quantile_edges_of_a_discrete_feature_are_deduplicated_and_leave_no_bin_empty() -> None:
    values = np.repeat([0.0, 1.0, 2.0, 3.0], [700, 200, 80, 20])
    edges = drift.quantile_edges(values, 10)
    assert edges.tolist() == [0.0, 1.0]  # seven deciles are 0, two are 1
    counts, missing = drift.count_numeric(values, edges)
    assert counts.tolist() == [700, 200, 100] and missing == 0


def _no_drift(rng: np.random.Generator, n: int, m: int, runs: int) -> np.ndarray:
    """PSI and p-value of `runs` pairs of samples (n and m rows) of one 10-bin population."""
    shares = np.full(10, 0.1)
    out = np.empty((runs, 2))
    for i in range(runs):
        ref, cur = rng.multinomial(n, shares), rng.multinomial(m, shares)
        value = drift.psi_counts(ref, cur)
        out[i] = value, drift.psi_p_value(value, n, m, drift.degrees_of_freedom(ref))
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


def test_a_check_of_an_unchanged_population_alarms_less_often_than_alpha() -> None:
    # Eleven parts checked together at the smallest judged size: the Bonferroni split and the
    # PSI threshold keep the chance that anything at all is flagged below alpha.
    rng = np.random.default_rng(11)
    thresholds = drift.Thresholds()
    shares = np.full(10, 0.1)
    names = [f"f{i}" for i in range(11)]
    profile = drift.Profile(
        schema_version=drift.PROFILE_SCHEMA_VERSION,
        model_name="m",
        n_bins=10,
        rows=24_000,
        features={
            name: drift.NumericProfile(
                24_000, [float(e) for e in range(9)], rng.multinomial(24_000, shares).tolist(), 0
            )
            for name in names
        },
    )
    m, runs = thresholds.min_rows, 2000
    alarms = 0
    for _ in range(runs):
        current = {name: np.append(rng.multinomial(m, shares), 0) for name in names}
        report = drift.compare(profile, current, {}, thresholds, m)
        alarms += report.status in ("moderate", "significant")
    assert alarms / runs < thresholds.alpha * 1.5  # 1.5: room for sampling noise of the test


@pytest.mark.parametrize(
    ("psi", "p_value", "tests", "status"),
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
    psi: float, p_value: float, tests: int, status: str
) -> None:
    assert drift.classify(psi, p_value, drift.Thresholds(alpha=0.01), tests) == status


def test_thresholds_refuse_inverted_levels() -> None:
    with pytest.raises(ValueError, match="moderate < significant"):
        drift.Thresholds(moderate=0.3, significant=0.2)


def test_fewer_rows_than_min_rows_report_no_numbers() -> None:
    reference = np.array([100, 100, 100, 0])
    part = drift.feature_drift("numeric", reference, np.array([5, 0, 0, 0]), drift.Thresholds())
    assert (part.status, part.psi, part.p_value, part.rows) == ("insufficient_data", None, None, 5)


def test_missing_rate_change_and_unseen_share_are_reported() -> None:
    reference = np.array([40, 40, 0, 20])  # a, b, unseen, missing
    current = np.array([100, 100, 100, 200])
    part = drift.feature_drift("categorical", reference, current, drift.Thresholds())
    assert part.missing_rate_reference == pytest.approx(0.2)
    assert part.missing_rate_change == pytest.approx(0.4 - 0.2)
    assert part.unseen_share == pytest.approx(0.2)
    assert part.status == "significant"


def _training() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 4000
    return pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "code": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
            "y": rng.integers(0, 2, n),
        }
    )


def _profile(frame: pd.DataFrame) -> drift.Profile:
    schema, clean = infer_and_validate(frame, DataParams(target="y"), "train")
    proba = np.column_stack([np.full(len(clean), 0.7), np.full(len(clean), 0.3)])
    proba[::2] = [0.2, 0.8]
    return drift.build_profile(schema, clean, 10, "m", proba, model_sha256="abc")


def test_profile_survives_json_and_is_validated_when_read() -> None:
    profile = _profile(_training())
    again = drift.Profile.decode(msgspec.json.encode(profile.to_dict()), "models/profile.json")
    assert again == profile
    broken = profile.to_dict()
    broken["features"]["x"]["counts"] = broken["features"]["x"]["counts"][:-1]
    with pytest.raises(SchemaError, match=r"models/profile.json: 'x': 9 edges need 10 counts"):
        drift.Profile.from_dict(broken, "models/profile.json")
    with pytest.raises(SchemaError, match="schema_version 99 is not supported"):
        drift.Profile.from_dict({**profile.to_dict(), "schema_version": 99})


def test_checking_a_batch_never_moves_the_training_edges() -> None:
    train = _training()
    profile = _profile(train)
    before = profile.to_dict()
    shifted = train.assign(x=train["x"] + 3)
    report = drift.check_frame(profile, shifted)
    assert report.features["x"].status == "significant"
    assert report.features["code"].status == "stable"
    assert profile.to_dict() == before
    tally = drift.Tally(profile)
    tally.add_rows(len(shifted))
    tally.add_numeric("x", shifted["x"].to_numpy())
    bins = [
        row["bin"] for row in drift.distribution_rows(profile.features["x"], tally.features["x"])
    ]
    edges = profile.features["x"].edges
    assert bins[0] == f"(-inf, {edges[0]:g}]"  # the training cut points, not the batch's


def test_prediction_drift_is_left_out_when_no_row_carries_probabilities() -> None:
    train = _training()
    profile = _profile(train)
    without = drift.check_frame(profile, train)
    assert without.predictions == {} and without.status == "stable"
    scores = np.where(np.arange(len(train)) % 2 == 0, 0.8, 0.3)
    same = drift.check_frame(profile, train, probabilities={"1": scores})
    assert same.predictions["1"].status == "stable"
    moved = drift.check_frame(profile, train, probabilities={"1": np.full(len(train), 0.95)})
    assert moved.predictions["1"].status == "significant"
    assert moved.flagged() == ["prediction 1"]


def test_check_frame_names_the_missing_feature_column() -> None:
    profile = _profile(_training())
    with pytest.raises(SchemaError, match=r"lacks profiled feature column.*code"):
        drift.check_frame(profile, pd.DataFrame({"x": [1.0]}))
