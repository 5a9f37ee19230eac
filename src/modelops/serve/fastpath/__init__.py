"""A fitted Pipeline in; a pandas-free `predict_proba` derived from its fitted steps out, or why not.

For one row, `pipeline.predict_proba` spends most of its time on DataFrame and ColumnTransformer
bookkeeping, and sklearn's tree ensembles add an OpenMP region per tree (HistGradientBoosting) or
a thread-pool round trip per call (random forests), whatever the batch size. `derive` reads the fitted
attributes of every step (imputer statistics and missing indicators, scaler moments, one-hot
categories and infrequent groups: `steps`; then the estimator's coefficients or trees:
`estimators`) and rebuilds the same arithmetic on plain numpy arrays. Nothing here knows a feature
or a dataset: every number comes from the fitted object. A step it does not understand raises
`UnsupportedPipeline` with the reason.

**The guard.** `verify` must show every way a batch may be computed equal to
`pipeline.predict_proba` (within the card's tolerance) on probe rows before the server uses the fast
path; otherwise the server scores with the Pipeline itself and reports why. This, not the reading
of sklearn's attributes, is what makes a scikit-learn upgrade safe: a private attribute that moved
fails derivation, one that changed meaning fails verification, and either way the answers stay the
Pipeline's.

Rows come in as sequences of values in schema feature order, None for missing: what a JSON request
decodes to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from modelops.card import REFERENCE_TOLERANCE
from modelops.schema import CategoricalFeature, FeatureSchema, frame_from_records
from modelops.serve.fastpath.estimators import (
    CHANGED_INTERNALS,
    TREE_WALK_MAX_ROWS,
    Estimator,
    Linear,
    TreeEnsemble,
    derive_estimator,
)
from modelops.serve.fastpath.steps import (
    Block,
    ImputeNumbers,
    NumericStep,
    UnsupportedPipeline,
    derive_blocks,
    numeric_step,
)
from modelops.types import FloatArray, Row

__all__ = [
    "TREE_WALK_MAX_ROWS",
    "FastPath",
    "UnsupportedPipeline",
    "derive",
    "probe_records",
    "rows_from_records",
    "verify",
]


class FastPath:
    """predict_proba on rows of values in schema order, equal to the Pipeline it was derived from."""

    def __init__(
        self,
        names: Sequence[str],
        numeric_positions: Sequence[int],
        categorical_positions: Sequence[int],
        blocks: Sequence[Block],
        between: Sequence[NumericStep],
        estimator: Estimator,
        classes: Sequence[Any],
        description: str,
    ) -> None:
        self.names = tuple(names)
        self.classes = list(classes)
        self.description = description
        self._n_numeric = len(numeric_positions)
        self._numeric_get = _getter(numeric_positions)
        self._categorical_positions = tuple(categorical_positions)
        self._blocks = tuple(blocks)
        self._between = tuple(between)
        self._estimator = estimator

    def transform(self, rows: Sequence[Row]) -> FloatArray:
        """The matrix the fitted estimator sees (ColumnTransformer output and any steps after it)."""
        n = len(rows)
        if self._n_numeric:
            # float64 turns None into NaN, which is what the training frame held for missing.
            numbers = np.array([self._numeric_get(r) for r in rows], dtype=np.float64)
            numbers = numbers.reshape(n, self._n_numeric)
        else:
            numbers = np.empty((n, 0), dtype=np.float64)
        categories = [[r[i] for r in rows] for i in self._categorical_positions]
        parts = [block.apply(numbers, categories) for block in self._blocks]
        x = parts[0] if len(parts) == 1 else np.hstack(parts)
        for step in self._between:
            x = step.apply(x)
        return x

    def predict_proba(self, rows: Sequence[Row]) -> FloatArray:
        return self._estimator(self.transform(rows))

    def numpy_only(self, n_rows: int) -> bool:
        """Whether a batch of this size is computed in numpy alone, without calling into the
        estimator (whose compiled code may start OpenMP or joblib threads)."""
        est = self._estimator
        if isinstance(est, TreeEnsemble):
            return n_rows <= TREE_WALK_MAX_ROWS
        return isinstance(est, Linear)

    def variants(self) -> list[tuple[str, Callable[[Sequence[Row]], FloatArray], bool]]:
        """Every way a batch may be computed: (name, function, whether it serves single rows), so
        `verify` can prove each one on the batch sizes it will see."""
        est = self._estimator
        if isinstance(est, TreeEnsemble):
            return [
                ("tree walk", lambda rows: est.walk(self.transform(rows)), True),
                ("estimator", lambda rows: est.delegate(self.transform(rows)), False),
            ]
        return [("fast path", self.predict_proba, True)]


def _getter(positions: Sequence[int]) -> Callable[[Row], Any]:
    if not positions:
        return lambda row: ()
    return itemgetter(*positions)


def rows_from_records(schema: FeatureSchema, records: Sequence[Mapping[str, Any]]) -> list[Row]:
    """JSON-like records (None or absent for missing) as rows in schema order."""
    names = schema.names
    return [tuple(rec.get(name) for name in names) for rec in records]


# --------------------------------------------------------------------------- derivation


def derive(pipeline: Any, schema: FeatureSchema) -> FastPath:
    """Build the fast path from a fitted Pipeline([ColumnTransformer, ..., classifier]).

    Raises UnsupportedPipeline naming the first step or setting it cannot reproduce exactly.
    """
    if not isinstance(pipeline, Pipeline):
        raise UnsupportedPipeline(f"the model is a {type(pipeline).__name__}, not a Pipeline")
    steps = [(name, step) for name, step in pipeline.steps if step not in (None, "passthrough")]
    if len(steps) < 2:
        raise UnsupportedPipeline("the Pipeline needs a ColumnTransformer and a classifier")
    (ct_name, ct), *middle, (est_name, estimator) = steps
    if not isinstance(ct, ColumnTransformer):
        raise UnsupportedPipeline(
            f"first step {ct_name!r} is a {type(ct).__name__}; the fast path starts at a "
            "ColumnTransformer"
        )
    numeric = [i for i, f in enumerate(schema.features) if not isinstance(f, CategoricalFeature)]
    categorical = [i for i, f in enumerate(schema.features) if isinstance(f, CategoricalFeature)]
    blocks = derive_blocks(ct, schema, numeric, categorical)
    width = sum(b.width for b in blocks)

    between: list[NumericStep] = []
    for name, step in middle:
        derived = numeric_step(name, step, width)
        if isinstance(derived, ImputeNumbers) and derived.indicator is not None:
            width += len(derived.indicator)
        between.append(derived)

    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and n_in != width:
        raise UnsupportedPipeline(
            f"estimator expects {n_in} columns, the derived steps give {width}"
        )
    if hasattr(estimator, "feature_names_in_"):
        raise UnsupportedPipeline(
            f"estimator {est_name!r} was fitted on named columns; the fast path passes a matrix"
        )
    compiled, what = derive_estimator(estimator)
    description = (
        f"numpy preprocessing ({', '.join(f'{b.name}: {b.width} cols' for b in blocks)}) "
        f"then {what}"
    )
    return FastPath(
        schema.names,
        numeric,
        categorical,
        blocks,
        between,
        compiled,
        list(estimator.classes_),
        description,
    )


# --------------------------------------------------------------------------- proof


def probe_records(
    schema: FeatureSchema, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The given rows plus variants that reach every branch of the preprocessing: each row with every
    nullable feature missing, with every lenient categorical feature unseen, and a row per known
    category of each categorical feature."""
    base = [dict(r) for r in records]
    if not base:
        return []
    out = list(base)
    nullable = [f.name for f in schema.features if f.nullable]
    if nullable:
        out += [{**r, **dict.fromkeys(nullable)} for r in base]
    lenient = [f for f in schema.categorical if not f.strict]
    if lenient:
        out += [{**r, **{f.name: _unseen(f) for f in lenient}} for r in base]
    for f in schema.categorical:
        out += [{**base[i % len(base)], f.name: c} for i, c in enumerate(f.categories)]
    return out


def _unseen(feature: CategoricalFeature) -> str:
    token = "<unseen>"
    while token in feature.categories:
        token += "!"
    return token


def verify(
    fast: FastPath, pipeline: Any, schema: FeatureSchema, records: Sequence[Mapping[str, Any]]
) -> float:
    """Largest |Δp| between every variant of the fast path and `pipeline.predict_proba` on `records`.

    Raises UnsupportedPipeline when any variant differs by more than the card's tolerance, fails on
    the probe rows, or the classes differ.
    """
    if list(pipeline.classes_) != fast.classes:
        raise UnsupportedPipeline("the derived classes differ from the pipeline's")
    want = np.asarray(pipeline.predict_proba(frame_from_records(schema, records)), dtype=np.float64)
    rows = rows_from_records(schema, records)
    worst = 0.0
    for name, variant, single_rows in fast.variants():
        # One-row batches take other shapes through numpy; prove them where they will be served.
        for chunk in (len(rows), 1) if single_rows else (len(rows),):
            worst = max(worst, _difference(name, variant, rows, chunk, want))
    return worst


def _difference(
    name: str,
    variant: Callable[[Sequence[Row]], FloatArray],
    rows: Sequence[Row],
    chunk: int,
    want: FloatArray,
) -> float:
    try:
        got = np.vstack([variant(rows[i : i + chunk]) for i in range(0, len(rows), chunk)])
    except CHANGED_INTERNALS as exc:
        raise UnsupportedPipeline(
            f"{name}: fails on the probe rows ({type(exc).__name__}: {exc})"
        ) from None
    if got.shape != want.shape:
        raise UnsupportedPipeline(f"{name}: shape {got.shape}, the pipeline gives {want.shape}")
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not diff <= REFERENCE_TOLERANCE:
        raise UnsupportedPipeline(
            f"{name}: max |Δp| = {diff:.3g} from the pipeline (> {REFERENCE_TOLERANCE:g})"
        )
    return diff
