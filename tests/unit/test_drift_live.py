"""The server's sliding window: same answers as a batch check of its rows, nothing before min_rows."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops import drift, synthetic
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate

SEED = 7


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureSchema, drift.Profile]:
    raw = synthetic.generate_customers(12_000, SEED)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    rng = np.random.default_rng(SEED)
    p1 = rng.beta(2, 5, len(clean))
    profile = drift.build_profile(schema, clean, 10, "churn", np.column_stack([1 - p1, p1]))
    return schema, profile


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Rows as the server sees them: JSON-like values, None for missing."""
    sub = frame[names].astype(object)
    return sub.where(sub.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


def _scores(p1: np.ndarray) -> list[dict[str, float]]:
    return [{"0": float(1 - p), "1": float(p)} for p in p1]


def test_window_answers_like_a_batch_check_of_its_last_rows(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(2600, SEED, "campaign")
    p1 = np.random.default_rng(1).beta(3, 3, len(frame))
    records, scores = _records(frame, schema.names), _scores(p1)
    live = drift.LiveWindow(profile, window=1000, min_rows=300)
    start = 0
    for size in [1, 7, 300, 1, 999, 1200, 92]:  # chunks smaller and larger than the window
        live.observe(records[start : start + size], scores[start : start + size])
        start += size
    assert start == len(frame) and live.rows == 1000
    expected = drift.check_frame(
        profile,
        schema.to_model_frame(frame.iloc[-1000:]),
        live.thresholds,
        probabilities={"1": p1[-1000:]},
    )
    assert live.snapshot() == expected
    assert set(expected.flagged()) >= {"age", "contract", "tenure_months", "total_charges"}


def test_window_reports_no_numbers_until_min_rows(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(400, SEED, "campaign")
    live = drift.LiveWindow(profile, window=1000, min_rows=300)
    assert live.snapshot().status == "insufficient_data"
    live.observe(_records(frame.iloc[:299], schema.names))
    early = live.snapshot()
    assert early.rows == 299 and early.status == "insufficient_data"
    assert all(d.psi is None and d.p_value is None for d in early.features.values())
    live.observe(_records(frame.iloc[299:], schema.names))
    late = live.snapshot()
    assert late.rows == 400 and late.status == "significant"
    assert late.features["age"].psi is not None


def test_fresh_rows_from_the_training_process_raise_nothing(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(3000, SEED, "no_drift")
    p1 = np.random.default_rng(2).beta(2, 5, len(frame))
    live = drift.LiveWindow(profile, window=2000, min_rows=500)
    for start in range(0, len(frame), 50):
        rows = frame.iloc[start : start + 50]
        live.observe(_records(rows, schema.names), _scores(p1[start : start + 50]))
    snap = live.snapshot()
    assert snap.status == "stable" and snap.flagged() == []
    assert snap.predictions["1"].rows == 2000


def test_rows_without_probabilities_count_towards_feature_drift_only(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(600, SEED, "no_drift")
    live = drift.LiveWindow(profile, window=1000, min_rows=300)
    live.observe(_records(frame, schema.names))
    assert live.snapshot().predictions == {}
    live.observe(_records(frame.iloc[:100], schema.names), _scores(np.full(100, 0.2)))
    snap = live.snapshot()
    assert snap.rows == 700 and snap.features["age"].rows == 700
    assert snap.predictions["1"].rows == 100
    assert snap.predictions["1"].status == "insufficient_data"


def test_window_bins_raw_json_values_as_the_batch_reader_does(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    _, profile = trained
    live = drift.LiveWindow(profile, window=10, min_rows=1)
    edges = profile.features["tenure_months"].edges
    row = {
        "tenure_months": edges[0],  # on an edge: the bin that edge closes
        "age": float("nan"),
        "contract": "one_year",
        "region": "region_zz",  # unseen in training
        "plan": None,
    }
    live.observe([row])
    snap = live.snapshot()
    assert snap.features["tenure_months"].missing_rate_current == 0.0
    assert snap.features["age"].missing_rate_current == 1.0
    assert snap.features["region"].unseen_share == 1.0
    assert snap.features["plan"].missing_rate_current == 1.0
    assert snap.features["payment_method"].missing_rate_current == 1.0  # absent key: missing
    live_counts = drift.Tally(profile)
    live_counts.add_numeric("tenure_months", np.array([edges[0]]))
    assert live_counts.features["tenure_months"][0] == 1


def test_concurrent_observers_lose_no_rows(trained: tuple[FeatureSchema, drift.Profile]) -> None:
    schema, profile = trained
    records = _records(synthetic.generate_customers(800, SEED, "no_drift"), schema.names)
    live = drift.LiveWindow(profile, window=5000, min_rows=300)

    def feed() -> None:
        for i in range(0, len(records), 10):
            live.observe(records[i : i + 10])

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = live.snapshot()
    assert snap.rows == 3200
    assert all(d.rows == 3200 for d in snap.features.values())


def test_window_refuses_misaligned_probabilities_and_bad_sizes(
    trained: tuple[FeatureSchema, drift.Profile],
) -> None:
    _, profile = trained
    live = drift.LiveWindow(profile, window=100, min_rows=10)
    with pytest.raises(ValueError, match="2 rows but 1 probability maps"):
        live.observe([{}, {}], [{"1": 0.5}])
    with pytest.raises(ValueError, match="min_rows 500 exceeds the window of 100 rows"):
        drift.LiveWindow(profile, window=100, min_rows=500)
    live.observe([{"age": 40}])
    with pytest.raises(ValueError, match="'age': 'forty' is not a number"):
        live.observe([{"age": 41}, {"age": "forty"}])
    assert live.rows == 1  # a refused request leaves the window as it was
