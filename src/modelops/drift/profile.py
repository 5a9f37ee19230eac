"""The training frame (and the model's predicted probabilities) in; the frozen reference profile
(models/profile.json) out.

A numeric feature keeps the interior quantile cut points of its training values (`edges`). Cut
points are observed values (quantile method "lower"), deduplicated, and never the maximum, so every
reference value bin holds at least one row even for discrete features. A categorical feature keeps
its training categories. The predicted probability of each scored class is binned like a numeric
feature. The bins themselves are defined in `modelops.drift.bins`; the edges are frozen here at
training time, and checking a batch never re-derives them from the batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from modelops.drift.bins import category_counts, encode, numeric_counts
from modelops.drift.status import LiveSettings
from modelops.errors import SchemaError
from modelops.types import FloatArray, IntArray

if TYPE_CHECKING:
    import pandas as pd

    from modelops.schema import FeatureSchema

PROFILE_SCHEMA_VERSION = 1
MISSING_LABEL = "(missing)"
UNSEEN_LABEL = "(unseen)"


class NumericProfile(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="numeric", tag_field="kind"
):
    rows: int
    edges: list[float]
    counts: list[int]
    missing: int
    summary: dict[str, float] = msgspec.field(default_factory=dict)

    def bin_counts(self) -> IntArray:
        """Counts in bin order: the value bins, then missing."""
        return np.array([*self.counts, self.missing], dtype=np.int64)

    def labels(self) -> list[str]:
        bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        values = [
            f"({lo}, {hi}{')' if hi == 'inf' else ']'}" for lo, hi in itertools.pairwise(bounds)
        ]
        return [*values, MISSING_LABEL]


class CategoricalProfile(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="categorical", tag_field="kind"
):
    rows: int
    categories: list[str]
    counts: list[int]
    unseen: int
    missing: int

    def bin_counts(self) -> IntArray:
        """Counts in bin order: one per category, then unseen, then missing."""
        return np.array([*self.counts, self.unseen, self.missing], dtype=np.int64)

    def labels(self) -> list[str]:
        return [*self.categories, UNSEEN_LABEL, MISSING_LABEL]


FeatureProfile = NumericProfile | CategoricalProfile


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The reference profile of one trained model (models/profile.json), frozen at training time."""

    schema_version: int
    model_name: str
    n_bins: int
    rows: int
    features: dict[str, FeatureProfile]
    predictions: dict[str, NumericProfile] = msgspec.field(default_factory=dict)
    model_sha256: str | None = None  # the model artifact this profile was computed with
    live: LiveSettings | None = None  # params.yaml's drift rule and window, for the server

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], source: str = "profile") -> Profile:
        try:
            profile = msgspec.convert(obj, type=cls)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"{source}: not a valid reference profile: {exc}") from None
        profile._check(source)
        return profile

    @classmethod
    def decode(cls, data: bytes, source: str = "profile") -> Profile:
        try:
            profile = msgspec.json.decode(data, type=cls)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SchemaError(f"{source}: not a valid reference profile: {exc}") from None
        profile._check(source)
        return profile

    def _check(self, source: str) -> None:
        if self.schema_version != PROFILE_SCHEMA_VERSION:
            raise SchemaError(
                f"{source}: profile schema_version {self.schema_version} is not supported "
                f"(this modelops reads {PROFILE_SCHEMA_VERSION}); re-run the profile stage"
            )
        parts: dict[str, FeatureProfile] = {**self.features}
        parts.update({f"prediction {k}": v for k, v in self.predictions.items()})
        for name, p in parts.items():
            where = f"{source}: {name!r}"
            if isinstance(p, NumericProfile):
                if len(p.counts) != len(p.edges) + 1:
                    raise SchemaError(
                        f"{where}: {len(p.edges)} edges need {len(p.edges) + 1} counts"
                    )
                if any(not math.isfinite(e) for e in p.edges) or any(
                    b <= a for a, b in itertools.pairwise(p.edges)
                ):
                    raise SchemaError(f"{where}: edges must be finite and strictly increasing")
            elif len(p.counts) != len(p.categories):
                raise SchemaError(
                    f"{where}: {len(p.categories)} categories but {len(p.counts)} counts"
                )
            if int(p.bin_counts().min()) < 0 or int(p.bin_counts().sum()) != p.rows:
                raise SchemaError(f"{where}: counts must be non-negative and sum to rows={p.rows}")


def quantile_edges(values: FloatArray, n_bins: int) -> FloatArray:
    """Interior cut points splitting the non-missing `values` into at most `n_bins` quantile bins."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, qs, method="lower"))
    return edges[edges < finite.max()].astype(np.float64)


def numeric_profile(values: FloatArray, n_bins: int) -> NumericProfile:
    edges = quantile_edges(values, n_bins)
    counts = numeric_counts(values, edges)
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
    return NumericProfile(
        int(values.size), edges.tolist(), counts[:-1].tolist(), int(counts[-1]), summary
    )


def categorical_profile(values: Sequence[Any], categories: Sequence[str]) -> CategoricalProfile:
    counts = category_counts(*encode(values), categories)
    return CategoricalProfile(
        len(values), list(categories), counts[:-2].tolist(), int(counts[-2]), int(counts[-1])
    )


def build_profile(
    schema: FeatureSchema,
    frame: pd.DataFrame,
    n_bins: int,
    model_name: str,
    prediction_proba: FloatArray | None = None,
    model_sha256: str | None = None,
) -> Profile:
    """The reference profile of a model: every schema feature over the training `frame` and,
    when given, the predicted probability of each scored class (the positive class for binary)."""
    from modelops.schema import NumericFeature  # with pandas: what profiling a frame needs

    model_frame = schema.to_model_frame(frame)
    features: dict[str, FeatureProfile] = {}
    for f in schema.features:
        col = model_frame[f.name].to_numpy()
        if isinstance(f, NumericFeature):
            features[f.name] = numeric_profile(col.astype(np.float64), n_bins)
        else:
            features[f.name] = categorical_profile(col, f.categories)
    predictions: dict[str, NumericProfile] = {}
    if prediction_proba is not None:
        classes = schema.target.classes
        for cls in schema.target.scored:
            column = prediction_proba[:, classes.index(cls)]
            predictions[str(cls)] = numeric_profile(column.astype(np.float64), n_bins)
    return Profile(
        schema_version=PROFILE_SCHEMA_VERSION,
        model_name=model_name,
        n_bins=n_bins,
        rows=len(frame),
        features=features,
        predictions=predictions,
        model_sha256=model_sha256,
    )
