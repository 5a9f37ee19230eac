"""The reference profile's bins: quantile cut points from training data, every reference bin non-empty."""

from __future__ import annotations

import numpy as np
import pandas as pd

from modelops import drift
from modelops.params import parse
from modelops.schema import infer_and_validate


def test_quantile_edges_split_continuous_values_into_equal_bins() -> None:
    values = np.random.default_rng(1).normal(size=10_000)
    edges = drift.quantile_edges(values, 10)
    counts, missing = drift.count_numeric(values, edges)
    assert len(edges) == 9 and missing == 0
    assert counts.sum() == 10_000
    assert counts.min() >= 990 and counts.max() <= 1010


def test_discrete_values_get_deduplicated_edges_and_no_empty_bin() -> None:
    values = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 5, np.nan, np.nan], dtype=float)
    edges = drift.quantile_edges(values, 10)
    assert edges.tolist() == [0.0, 1.0, 2.0]  # the maximum is never a cut point
    counts, missing = drift.count_numeric(values, edges)
    assert counts.tolist() == [4, 3, 2, 1] and missing == 2


def test_bins_are_right_closed_and_open_at_both_ends() -> None:
    edges = np.array([0.0, 10.0])
    counts, _ = drift.count_numeric(np.array([-1e300, 0.0, 0.1, 10.0, 10.1, 1e300]), edges)
    assert counts.tolist() == [2, 2, 2]


def test_categorical_counts_known_unseen_and_missing() -> None:
    values = np.array(["b", "a", None, "z", np.nan, "a"], dtype=object)
    counts, unseen, missing = drift.count_categorical(values, ["a", "b"])
    assert counts.tolist() == [2, 1] and unseen == 1 and missing == 2


def test_profile_covers_every_feature_and_the_prediction() -> None:
    rng = np.random.default_rng(3)
    raw = pd.DataFrame(
        {
            "x": np.where(rng.random(500) < 0.1, np.nan, rng.normal(size=500)),
            "c": rng.choice(["u", "v", "w"], 500),
            "y": rng.integers(0, 2, 500),
        }
    )
    schema, clean = infer_and_validate(raw, parse("data: {target: y, drop: []}").data, "t")
    proba = np.column_stack([1 - (p := rng.random(500)), p])
    profile = drift.build_profile(schema, clean, 5, "churn", proba).to_dict()
    assert profile["schema_version"] == drift.PROFILE_SCHEMA_VERSION
    assert profile["rows"] == 500 and set(profile["features"]) == {"x", "c"}
    x = profile["features"]["x"]
    assert sum(x["counts"]) + x["missing"] == 500 and x["missing"] == int(np.isnan(raw["x"]).sum())
    c = profile["features"]["c"]
    assert c["categories"] == ["u", "v", "w"] and sum(c["counts"]) == 500 and c["unseen"] == 0
    assert list(profile["predictions"]) == ["1"] and len(profile["predictions"]["1"]["edges"]) == 4
