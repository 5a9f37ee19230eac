"""The server's sliding window: same bins and answers as the drift stage's reader on the window's
rows, nothing before min_rows, evictions by decrement."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops import synthetic
from modelops.drift import incoming
from modelops.drift.profile import (
    PROFILE_SCHEMA_VERSION,
    CategoricalProfile,
    NumericProfile,
    Profile,
    build_profile,
)
from modelops.drift.status import Thresholds
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate
from modelops.serve.livedrift import LiveWindow
from tests.drift_files import judge, records

SEED = 7


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureSchema, Profile]:
    raw = synthetic.generate_customers(12_000, SEED)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    rng = np.random.default_rng(SEED)
    p1 = rng.beta(2, 5, len(clean))
    profile = build_profile(schema, clean, 10, "churn", np.column_stack([1 - p1, p1]))
    return schema, profile


def columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """Rows column-wise, as the server hands them to the window (an absent key is missing)."""
    return {name: [row.get(name) for row in rows] for name in names}


def observe(live: LiveWindow, rows: list[dict[str, Any]], p1: np.ndarray | None = None) -> None:
    scores = {"1": np.asarray(p1, np.float64)} if p1 is not None else None
    live.observe_columns(columns(rows, list(live.profile.features)), scores, len(rows))


def test_window_answers_like_the_drift_stage_on_its_last_rows(
    trained: tuple[FeatureSchema, Profile], tmp_path: Path
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(2600, SEED, "campaign")
    p1 = np.random.default_rng(1).beta(3, 3, len(frame))
    rows = records(frame, schema.names)
    live = LiveWindow(profile, window=1000, min_rows=300)
    start = 0
    for size in [1, 7, 300, 1, 999, 1200, 92]:  # chunks smaller and larger than the window
        observe(live, rows[start : start + size], p1[start : start + size])
        start += size
    assert start == len(frame) and live.rows == 1000
    expected = judge(tmp_path, profile, frame.iloc[-1000:], p1[-1000:], live.thresholds)
    assert live.snapshot() == expected
    assert set(expected.flagged()) >= {"age", "contract", "tenure_months", "total_charges"}


def test_window_reports_no_numbers_until_min_rows(
    trained: tuple[FeatureSchema, Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(400, SEED, "campaign")
    live = LiveWindow(profile, window=1000, min_rows=300)
    assert live.snapshot().status == "insufficient_data"
    observe(live, records(frame.iloc[:299], schema.names))
    early = live.snapshot()
    assert early.rows == 299 and early.status == "insufficient_data"
    assert all(d.psi is None and d.p_value is None for d in early.features.values())
    observe(live, records(frame.iloc[299:], schema.names))
    late = live.snapshot()
    assert late.rows == 400 and late.status == "significant"
    assert late.features["age"].psi is not None


def test_fresh_rows_from_the_training_process_raise_nothing(
    trained: tuple[FeatureSchema, Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(3000, SEED, "no_drift")
    p1 = np.random.default_rng(2).beta(2, 5, len(frame))
    live = LiveWindow(profile, window=2000, min_rows=500)
    for start in range(0, len(frame), 50):
        rows = frame.iloc[start : start + 50]
        observe(live, records(rows, schema.names), p1[start : start + 50])
    snap = live.snapshot()
    assert snap.status == "stable" and snap.flagged() == []
    assert snap.predictions["1"].rows == 2000


def test_rows_without_probabilities_count_towards_feature_drift_only(
    trained: tuple[FeatureSchema, Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(600, SEED, "no_drift")
    live = LiveWindow(profile, window=1000, min_rows=300)
    observe(live, records(frame, schema.names))
    assert live.snapshot().predictions == {}
    observe(live, records(frame.iloc[:100], schema.names), np.full(100, 0.2))
    snap = live.snapshot()
    assert snap.rows == 700 and snap.features["age"].rows == 700
    assert snap.predictions["1"].rows == 100
    assert snap.predictions["1"].status == "insufficient_data"


def test_window_bins_raw_json_values_as_the_batch_reader_does(
    trained: tuple[FeatureSchema, Profile],
) -> None:
    _, profile = trained
    live = LiveWindow(profile, window=10, min_rows=1)
    row = {
        "tenure_months": profile.features["tenure_months"].edges[0],  # on an edge
        "age": float("nan"),
        "contract": "one_year",
        "region": "region_zz",  # unseen in training
        "plan": None,
    }
    observe(live, [row])
    snap = live.snapshot()
    assert snap.features["tenure_months"].missing_rate_current == 0.0
    assert snap.features["age"].missing_rate_current == 1.0
    assert snap.features["region"].unseen_share == 1.0
    assert snap.features["plan"].missing_rate_current == 1.0
    assert snap.features["payment_method"].missing_rate_current == 1.0  # absent key: missing


def _awkward_profile(rng: np.random.Generator) -> Profile:
    edges = [-1.0, 0.0, 0.5, 2.0]
    return Profile(
        schema_version=PROFILE_SCHEMA_VERSION,
        model_name="m",
        n_bins=5,
        rows=500,
        features={
            "x": NumericProfile(500, edges, rng.multinomial(450, [0.2] * 5).tolist(), 50),
            "code": CategoricalProfile(500, ["1", "2", "3"], [200, 150, 100], 0, 50),
        },
        predictions={"1": NumericProfile(500, [0.25, 0.5], [200, 200, 100], 0)},
    )


@pytest.mark.parametrize("seed", range(3))
def test_window_and_stage_reader_put_awkward_values_in_the_same_bins(
    seed: int, tmp_path: Path
) -> None:
    # NaN and None, values on an edge, ±inf, unseen categories, codes written as floats (2.0 is
    # the category "2"): the live window and the drift stage's reader must agree on every row.
    rng = np.random.default_rng(seed)
    profile = _awkward_profile(rng)
    n = 997
    x = rng.choice([-1.0, 0.0, 0.5, 2.0, np.inf, -np.inf, np.nan, 0.25, -3.0, 7.5], n)
    drawn = rng.random(n) < 0.3
    x[drawn] = rng.normal(0, 2, int(drawn.sum()))
    code = rng.choice([1.0, 2.0, 3.0, 4.0, np.nan], n)
    p1 = rng.choice([0.25, 0.5, 0.1, 0.9, np.nan], n)
    frame = pd.DataFrame({"x": x, "code": code})
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    counts, _ = incoming.tally(tmp_path / "batch.parquet", profile)
    counts.add_scores("1", p1[~np.isnan(p1)])
    live = LiveWindow(profile, window=n, min_rows=1)
    live.observe_columns({"x": x.tolist(), "code": code.tolist()}, {"1": p1}, n)
    thresholds = Thresholds(min_rows=1)
    assert live.snapshot() == counts.report(thresholds)
    assert counts.features["x"].sum() == n and counts.features["code"][3] > 0  # 4.0: unseen


def test_concurrent_observers_lose_no_rows(trained: tuple[FeatureSchema, Profile]) -> None:
    schema, profile = trained
    rows = records(synthetic.generate_customers(800, SEED, "no_drift"), schema.names)
    live = LiveWindow(profile, window=5000, min_rows=300)

    def feed() -> None:
        for i in range(0, len(rows), 10):
            observe(live, rows[i : i + 10])

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = live.snapshot()
    assert snap.rows == 3200
    assert all(d.rows == 3200 for d in snap.features.values())


def test_window_refuses_misaligned_columns_and_bad_sizes(
    trained: tuple[FeatureSchema, Profile],
) -> None:
    _, profile = trained
    live = LiveWindow(profile, window=100, min_rows=10)
    with pytest.raises(ValueError, match="'1': 1 values for 2 rows"):
        live.observe_columns({"age": [40, 41]}, {"1": np.array([0.5])}, 2)
    with pytest.raises(ValueError, match="min_rows 500 exceeds the window of 100 rows"):
        LiveWindow(profile, window=100, min_rows=500)
    observe(live, [{"age": 40}])
    with pytest.raises(ValueError, match="'age': 'forty' is not a number"):
        observe(live, [{"age": 41}, {"age": "forty"}])
    assert live.rows == 1  # a refused request leaves the window as it was
