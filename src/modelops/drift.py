"""Arrays in, reference profiles and bin counts out: the pure numeric core of drift detection.

A numeric profile keeps the interior quantile cut points of the training values (`edges`); its bins
are right-closed and the outer ones open: (-inf, e0], (e0, e1], …, (e_last, +inf), plus a separate
count of missing values. Cut points are observed values (quantile method "lower"), deduplicated, and
never the maximum, so every reference bin holds at least one row even for discrete features.

A categorical profile keeps the count per known category, a count of values unseen in training,
and a count of missing values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelops.schema import FeatureSchema, NumericFeature

PROFILE_SCHEMA_VERSION = 1

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def quantile_edges(values: FloatArray, n_bins: int) -> FloatArray:
    """Interior cut points splitting the non-missing `values` into at most `n_bins` quantile bins."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, qs, method="lower"))
    return edges[edges < finite.max()].astype(np.float64)


def count_numeric(values: FloatArray, edges: FloatArray) -> tuple[IntArray, int]:
    """Counts per bin (len(edges) + 1 bins) and the number of missing values."""
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(idx, minlength=edges.size + 1).astype(np.int64)
    return counts, int(missing.sum())


def count_categorical(
    values: npt.NDArray[Any], categories: Sequence[str]
) -> tuple[IntArray, int, int]:
    """Counts per known category, then the unseen and missing counts. Missing is None or NaN."""
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], dtype=bool)
    present = values[~missing].astype(str)
    cats = np.asarray(list(categories), dtype=str)
    order = np.argsort(cats)
    pos = np.searchsorted(cats[order], present)
    pos = np.minimum(pos, max(cats.size - 1, 0))
    known = cats.size > 0
    hit = (cats[order][pos] == present) if known else np.zeros(present.size, dtype=bool)
    counts = np.zeros(cats.size, dtype=np.int64)
    if known:
        np.add.at(counts, order[pos[hit]], 1)
    return counts, int((~hit).sum()), int(missing.sum())


def numeric_profile(values: FloatArray, n_bins: int) -> dict[str, Any]:
    edges = quantile_edges(values, n_bins)
    counts, missing = count_numeric(values, edges)
    finite = values[~np.isnan(values)]
    summary = (
        {
            "min": float(finite.min()),
            "max": float(finite.max()),
            "mean": float(finite.mean()),
            "std": float(finite.std()),
        }
        if finite.size
        else {}
    )
    return {
        "kind": "numeric",
        "rows": int(values.size),
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "missing": missing,
        "summary": summary,
    }


def categorical_profile(values: npt.NDArray[Any], categories: Sequence[str]) -> dict[str, Any]:
    counts, unseen, missing = count_categorical(values, categories)
    return {
        "kind": "categorical",
        "rows": len(values),
        "categories": list(categories),
        "counts": counts.tolist(),
        "unseen": unseen,
        "missing": missing,
    }


def build_profile(
    schema: FeatureSchema,
    frame: pd.DataFrame,
    n_bins: int,
    model_name: str,
    prediction_proba: npt.NDArray[np.float64] | None = None,
) -> dict[str, Any]:
    """The reference profile of a model: every schema feature over the training `frame` and,
    when given, the predicted probability of each scored class (the positive class for binary)."""
    model_frame = schema.to_model_frame(frame)
    features: dict[str, Any] = {}
    for f in schema.features:
        col = model_frame[f.name].to_numpy()
        if isinstance(f, NumericFeature):
            features[f.name] = numeric_profile(col.astype(np.float64), n_bins)
        else:
            features[f.name] = categorical_profile(col, f.categories)
    predictions: dict[str, Any] = {}
    if prediction_proba is not None:
        classes = schema.target.classes
        positive = schema.target.positive
        scored = [positive] if positive is not None else classes
        for cls in scored:
            column = prediction_proba[:, classes.index(cls)]
            predictions[str(cls)] = numeric_profile(column.astype(np.float64), n_bins)
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "model_name": model_name,
        "n_bins": n_bins,
        "rows": len(frame),
        "features": features,
        "predictions": predictions,
    }
