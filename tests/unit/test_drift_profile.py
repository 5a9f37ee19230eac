"""The reference profile: quantile cut points from training data, every reference bin non-empty,
validated when read back."""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd
import pytest

from modelops.drift.bins import numeric_counts
from modelops.drift.profile import (
    PROFILE_SCHEMA_VERSION,
    Profile,
    build_profile,
    categorical_profile,
    quantile_edges,
)
from modelops.errors import SchemaError
from modelops.params import DataParams, parse
from modelops.schema import infer_and_validate


def test_quantile_edges_split_continuous_values_into_equal_bins() -> None:
    values = np.random.default_rng(1).normal(size=10_000)
    edges = quantile_edges(values, 10)
    counts = numeric_counts(values, edges)
    assert len(edges) == 9 and counts[-1] == 0  # nothing missing
    assert counts.sum() == 10_000
    assert counts[:-1].min() >= 990 and counts[:-1].max() <= 1010


def test_discrete_values_get_deduplicated_edges_and_no_empty_bin() -> None:
    values = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 5, np.nan, np.nan], dtype=float)
    edges = quantile_edges(values, 10)
    assert edges.tolist() == [0.0, 1.0, 2.0]  # the maximum is never a cut point
    assert numeric_counts(values, edges).tolist() == [4, 3, 2, 1, 2]


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
    profile = build_profile(schema, clean, 5, "churn", proba).to_dict()
    assert profile["schema_version"] == PROFILE_SCHEMA_VERSION
    assert profile["rows"] == 500 and set(profile["features"]) == {"x", "c"}
    x = profile["features"]["x"]
    assert sum(x["counts"]) + x["missing"] == 500 and x["missing"] == int(np.isnan(raw["x"]).sum())
    c = profile["features"]["c"]
    assert c["categories"] == ["u", "v", "w"] and sum(c["counts"]) == 500 and c["unseen"] == 0
    assert list(profile["predictions"]) == ["1"] and len(profile["predictions"]["1"]["edges"]) == 4


def test_categorical_profile_counts_known_unseen_and_missing() -> None:
    values = np.array(["b", "a", None, "z", np.nan, "a"], dtype=object)
    c = categorical_profile(values, ["a", "b"])
    assert (c.rows, c.counts, c.unseen, c.missing) == (6, [2, 1], 1, 2)
    assert c.labels() == ["a", "b", "(unseen)", "(missing)"]


def test_profile_survives_json_and_is_validated_when_read() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"x": rng.normal(0, 1, 4000), "code": rng.choice(["a", "b"], 4000), "y": [0, 1] * 2000}
    )
    schema, clean = infer_and_validate(frame, DataParams(target="y"), "train")
    proba = np.column_stack([np.full(len(clean), 0.7), np.full(len(clean), 0.3)])
    profile = build_profile(schema, clean, 10, "m", proba, model_sha256="abc")
    again = Profile.decode(msgspec.json.encode(profile.to_dict()), "models/profile.json")
    assert again == profile
    broken = profile.to_dict()
    broken["features"]["x"]["counts"] = broken["features"]["x"]["counts"][:-1]
    with pytest.raises(SchemaError, match=r"models/profile.json: 'x': 9 edges need 10 counts"):
        Profile.from_dict(broken, "models/profile.json")
    with pytest.raises(SchemaError, match="schema_version 99 is not supported"):
        Profile.from_dict({**profile.to_dict(), "schema_version": 99})
