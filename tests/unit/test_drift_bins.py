"""The one binning kernel: which bin a value falls in, per value (the live window) and counted (the
profile and the drift stage), for numeric and categorical parts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from modelops.category import category_name
from modelops.drift.bins import (
    category_bins,
    category_counts,
    encode,
    numeric_bins,
    numeric_counts,
)
from modelops.drift.profile import quantile_edges


def test_numeric_bins_are_right_closed_with_open_outer_bins_and_a_missing_bin() -> None:
    edges = np.array([1.0, 2.0])
    values = np.array([-np.inf, 1.0, 1.0001, 2.0, 3.0, np.inf, np.nan])
    # (-inf, 1] gets -inf and 1; (1, 2] gets 1.0001 and 2; (2, inf) gets 3 and inf; one missing.
    assert numeric_bins(values, edges).tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert numeric_counts(values, edges).tolist() == [2, 2, 2, 1]


def test_without_edges_there_is_one_value_bin_and_the_missing_bin() -> None:
    values = np.array([5.0, np.nan, -np.inf])
    assert numeric_bins(values, np.empty(0)).tolist() == [0, 1, 0]
    assert numeric_counts(values, np.empty(0)).tolist() == [2, 1]


def _bin_by_definition(value: float, edges: list[float]) -> int:
    """The README's words, one value at a time: right-closed bins, NaN last."""
    if math.isnan(value):
        return len(edges) + 1
    return sum(1 for e in edges if e < value)


@pytest.mark.parametrize("seed", range(5))
def test_per_value_bins_and_counts_agree_with_the_definition_on_awkward_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_edges = int(rng.integers(1, 40))
    edges = np.unique(np.round(rng.normal(0, 3, n_edges), 1))
    values = np.concatenate(
        [
            rng.normal(0, 3, 500),
            np.round(rng.normal(0, 3, 300), 1),  # many values exactly on an edge
            rng.choice(edges, 100),
            np.nextafter(rng.choice(edges, 50), np.inf),  # just above an edge
            [np.nan] * 40,
            [np.inf] * 7,
            [-np.inf] * 3,
        ]
    )
    rng.shuffle(values)
    bins = numeric_bins(values, edges)
    assert bins.tolist() == [_bin_by_definition(v, edges.tolist()) for v in values.tolist()]
    counts = numeric_counts(values, edges)
    assert counts.tolist() == np.bincount(bins, minlength=len(edges) + 2).tolist()


def test_categorical_bins_are_known_categories_then_unseen_then_missing() -> None:
    values = ["a", "b", "a", "zzz", None, float("nan"), 3.0, "3", 3, np.float64(3.0), 2.5]
    bins = category_bins(*encode(values), ["a", "b", "3"])
    # The code 3.0 is the category "3", as in the schema; 2.5 is a category never seen.
    assert bins.tolist() == [0, 1, 0, 3, 4, 4, 2, 2, 2, 2, 3]
    assert category_counts(*encode(values), ["a", "b", "3"]).tolist() == [2, 1, 4, 2, 2]


def test_arrow_dictionaries_and_python_values_fall_in_the_same_bins() -> None:
    # The drift stage reads dictionary-encoded columns (nulls as code -1); the live window gets
    # Python values. Both go through the same table from dictionary entry to bin.
    rng = np.random.default_rng(9)
    categories = ["north", "south", "1", "2"]
    pool: list[Any] = ["north", "south", "east", None, "1", "2", "7"]
    values = [pool[i] for i in rng.integers(0, len(pool), 2000)]
    encoded = pa.array(values, pa.string()).dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    from_arrow = category_bins(codes, encoded.dictionary.to_pylist(), categories)
    from_python = category_bins(*encode(values), categories)
    assert from_arrow.tolist() == from_python.tolist()
    # A code column read as floats: 1.0 is the category "1", 7.0 one never seen.
    floats = pa.array([float(v) if v is not None and v.isdigit() else None for v in values])
    f_encoded = floats.dictionary_encode()
    f_codes = f_encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    from_float_codes = category_bins(f_codes, f_encoded.dictionary.to_pylist(), categories)
    unseen, missing = len(categories), len(categories) + 1
    position = {c: i for i, c in enumerate(categories)}
    assert from_float_codes.tolist() == [
        missing if v is None else position.get(category_name(v), unseen) for v in floats.to_pylist()
    ]


def test_quantile_edges_of_a_discrete_feature_are_deduplicated_and_leave_no_bin_empty() -> None:
    values = np.repeat([0.0, 1.0, 2.0, 3.0], [700, 200, 80, 20])
    edges = quantile_edges(values, 10)
    assert edges.tolist() == [0.0, 1.0]  # seven deciles are 0, two are 1
    assert numeric_counts(values, edges).tolist() == [700, 200, 100, 0]
