"""Drift reports: per-part numbers and statuses from current counts against the frozen profile,
the overall status, and the chart rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.drift.profile import PROFILE_SCHEMA_VERSION, NumericProfile, Profile, build_profile
from modelops.drift.report import compare, distribution_rows, feature_drift, format_report
from modelops.drift.status import Thresholds
from modelops.params import DataParams
from modelops.schema import infer_and_validate
from tests.drift_files import judge


def test_a_check_of_an_unchanged_population_alarms_less_often_than_alpha() -> None:
    # Eleven parts checked together at the smallest judged size: the Bonferroni split and the
    # PSI threshold keep the chance that anything at all is flagged below alpha.
    rng = np.random.default_rng(11)
    thresholds = Thresholds()
    shares = np.full(10, 0.1)
    names = [f"f{i}" for i in range(11)]
    profile = Profile(
        schema_version=PROFILE_SCHEMA_VERSION,
        model_name="m",
        n_bins=10,
        rows=24_000,
        features={
            name: NumericProfile(
                24_000, [float(e) for e in range(9)], rng.multinomial(24_000, shares).tolist(), 0
            )
            for name in names
        },
    )
    m, runs = thresholds.min_rows, 2000
    alarms = 0
    for _ in range(runs):
        current = {name: np.append(rng.multinomial(m, shares), 0) for name in names}
        report = compare(profile, current, {}, thresholds, m)
        alarms += report.status in ("moderate", "significant")
    assert alarms / runs < thresholds.alpha * 1.5  # 1.5: room for sampling noise of the test


def test_fewer_rows_than_min_rows_report_no_numbers() -> None:
    reference = np.array([100, 100, 100, 0])
    part = feature_drift("numeric", reference, np.array([5, 0, 0, 0]), Thresholds())
    assert (part.status, part.psi, part.p_value, part.rows) == ("insufficient_data", None, None, 5)


def test_missing_rate_change_and_unseen_share_are_reported() -> None:
    reference = np.array([40, 40, 0, 20])  # a, b, unseen, missing
    current = np.array([100, 100, 100, 200])
    part = feature_drift("categorical", reference, current, Thresholds())
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


def _profile(frame: pd.DataFrame) -> Profile:
    schema, clean = infer_and_validate(frame, DataParams(target="y"), "train")
    proba = np.column_stack([np.full(len(clean), 0.7), np.full(len(clean), 0.3)])
    proba[::2] = [0.2, 0.8]
    return build_profile(schema, clean, 10, "m", proba, model_sha256="abc")


def test_checking_a_batch_never_moves_the_training_edges(tmp_path: Path) -> None:
    train = _training()
    profile = _profile(train)
    before = profile.to_dict()
    shifted = train.assign(x=train["x"] + 3)
    report = judge(tmp_path, profile, shifted)
    assert report.features["x"].status == "significant"
    assert report.features["code"].status == "stable"
    assert profile.to_dict() == before
    current = np.array([0] * (len(profile.features["x"].edges)) + [len(shifted), 0])
    bins = [row["bin"] for row in distribution_rows(profile.features["x"], current)]
    edges = profile.features["x"].edges
    assert bins[0] == f"(-inf, {edges[0]:g}]"  # the training cut points, not the batch's
    assert bins[-1] == f"({edges[-1]:g}, inf)"


def test_prediction_drift_is_left_out_when_no_row_carries_probabilities(tmp_path: Path) -> None:
    train = _training()
    profile = _profile(train)
    without = judge(tmp_path / "parquet", profile, train)
    assert without.predictions == {} and without.status == "stable"
    scores = np.where(np.arange(len(train)) % 2 == 0, 0.8, 0.3)
    same = judge(tmp_path / "same", profile, train, scores)
    assert same.predictions["1"].status == "stable"
    moved = judge(tmp_path / "moved", profile, train, np.full(len(train), 0.95))
    assert moved.predictions["1"].status == "significant"
    assert moved.flagged() == ["prediction 1"]
    assert format_report(moved).endswith("overall: significant (prediction 1)")
