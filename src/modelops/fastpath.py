"""A fitted Pipeline in; a pandas-free `predict_proba` derived from its fitted steps out, or why not.

For one row, `pipeline.predict_proba` spends most of its time on DataFrame and ColumnTransformer
bookkeeping, and sklearn's tree ensembles add an OpenMP region per tree (HistGradientBoosting) or
a thread-pool round trip per call (random forests), whatever the batch size. `derive` reads the fitted
attributes of every step (imputer statistics and missing indicators, scaler moments, one-hot
categories and infrequent groups, then the estimator's coefficients or trees) and rebuilds the
same arithmetic on plain numpy arrays. Nothing here knows a feature or a dataset: every number comes
from the fitted object. A step it does not understand raises `UnsupportedPipeline` with the reason,
and `verify` must show the result equal to `pipeline.predict_proba` before anyone may use it.

Rows come in as sequences of values in schema feature order, None for missing: what a JSON request
decodes to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit, softmax
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from modelops.card import REFERENCE_TOLERANCE
from modelops.schema import CategoricalFeature, FeatureSchema, frame_from_records

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
Row = Sequence[Any]

# Walking every tree in numpy costs O(rows x trees x depth) element operations; the estimator's own
# compiled code wins once a batch is larger than this, so bigger batches go to it instead.
TREE_WALK_MAX_ROWS = 32


class UnsupportedPipeline(Exception):
    """The pipeline holds a step or setting the fast path cannot reproduce; the message says which."""


# --------------------------------------------------------------------------- preprocessing steps


@dataclass(frozen=True)
class _ImputeNumbers:
    """SimpleImputer on numbers: NaN -> fitted statistic, then the missing indicator columns."""

    statistics: FloatArray
    indicator: IntArray | None

    def apply(self, x: FloatArray) -> FloatArray:
        missing = np.isnan(x)
        out = np.where(missing, self.statistics, x) if missing.any() else x
        if self.indicator is None:
            return out
        return np.hstack([out, missing[:, self.indicator].astype(np.float64)])


@dataclass(frozen=True)
class _Scale:
    """StandardScaler: the same two in-place operations sklearn performs, in the same order."""

    mean: FloatArray | None
    scale: FloatArray | None

    def apply(self, x: FloatArray) -> FloatArray:
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x


@dataclass(frozen=True)
class _FillCategories:
    """SimpleImputer on categories: a missing value becomes the fitted fill (constant or mode)."""

    fill: tuple[Any, ...]

    def apply(self, columns: list[list[Any]]) -> list[list[Any]]:
        return [
            [fill if v is None else v for v in col]
            for col, fill in zip(columns, self.fill, strict=True)
        ]


@dataclass(frozen=True)
class _OneHot:
    """OneHotEncoder: per feature, a table from category to its output column within the block.

    A value missing from a table goes to `unknown` (the infrequent column when the encoder maps
    unseen values there, else -1: an all-zero block, as `handle_unknown="ignore"` does).
    """

    tables: tuple[dict[Any, int], ...]
    unknown: tuple[int, ...]
    offsets: tuple[int, ...]
    width: int

    def apply(self, columns: list[list[Any]]) -> FloatArray:
        n = len(columns[0]) if columns else 0
        out = np.zeros((n, self.width), dtype=np.float64)
        for col, table, unknown, offset in zip(
            columns, self.tables, self.unknown, self.offsets, strict=True
        ):
            hits = np.fromiter((table.get(v, unknown) for v in col), dtype=np.intp, count=n)
            rows = np.flatnonzero(hits >= 0)
            out[rows, offset + hits[rows]] = 1.0
        return out


_NumericStep = _ImputeNumbers | _Scale
_CategoricalStep = _FillCategories | _OneHot


@dataclass(frozen=True)
class _Block:
    """One ColumnTransformer entry: which input columns it reads and the steps it applies."""

    name: str
    numeric: bool
    inputs: IntArray  # positions in the numeric matrix, or in the categorical columns
    before: tuple[_CategoricalStep, ...]  # categorical blocks: steps up to and incl. one-hot
    after: tuple[_NumericStep, ...]  # steps on numbers
    width: int

    def apply(self, numbers: FloatArray, categories: list[list[Any]]) -> FloatArray:
        if self.numeric:
            x = numbers[:, self.inputs]
        else:
            cols = [categories[i] for i in self.inputs.tolist()]
            encoded: FloatArray | None = None
            for step in self.before:
                if isinstance(step, _OneHot):
                    encoded = step.apply(cols)
                else:
                    cols = step.apply(cols)
            assert encoded is not None  # derive() guarantees a categorical block ends encoded
            x = encoded
        for num_step in self.after:
            x = num_step.apply(x)
        return x


# --------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class _Linear:
    """LogisticRegression: the decision function and link sklearn applies, on a dense matrix."""

    coef: FloatArray
    intercept: FloatArray
    binary: bool

    def __call__(self, x: FloatArray) -> FloatArray:
        scores = x @ self.coef.T + self.intercept
        if self.binary:
            p = expit(scores.reshape(-1))
            return np.stack([1 - p, p], axis=1)
        return np.asarray(softmax(scores, axis=1), dtype=np.float64)


@dataclass(frozen=True)
class _Forest:
    """Every tree of an ensemble stacked into flat node arrays, walked for all trees at once.

    Leaves point to themselves, so `depth` steps bring every row to its leaf in every tree.
    `values[node]` holds the leaf's contribution to each output column.
    """

    roots: IntArray
    feature: IntArray
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]
    left: IntArray
    right: IntArray
    values: FloatArray  # (n_nodes, n_outputs)
    depth: int
    as_float32: bool  # sklearn trees compare float32 inputs; HistGradientBoosting keeps float64

    def leaf_sum(self, x: FloatArray) -> FloatArray:
        if self.as_float32:
            x = x.astype(np.float32).astype(np.float64)
        n, n_features = x.shape
        flat = x.reshape(-1)
        base = (np.arange(n, dtype=np.intp) * n_features)[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        any_missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            value = flat[base + self.feature[node]]
            go_left = value <= self.threshold[node]
            if any_missing:
                go_left = np.where(np.isnan(value), self.missing_left[node], go_left)
            node = np.where(go_left, self.left[node], self.right[node])
        summed: FloatArray = self.values[node].sum(axis=1)
        return summed


@dataclass(frozen=True)
class _TreeEnsemble:
    """Compiled trees for small batches, the estimator's own predict_proba for large ones."""

    forest: _Forest
    finish: Callable[[FloatArray], FloatArray]  # summed leaf values -> probabilities
    estimator: Any

    def __call__(self, x: FloatArray) -> FloatArray:
        if x.shape[0] <= TREE_WALK_MAX_ROWS:
            return self.walk(x)
        return self.delegate(x)

    def walk(self, x: FloatArray) -> FloatArray:
        return self.finish(self.forest.leaf_sum(x))

    def delegate(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)


@dataclass(frozen=True)
class _Delegate:
    """Any other classifier: its own predict_proba, on the matrix (no DataFrame on the way)."""

    estimator: Any

    def __call__(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)


_Estimator = _Linear | _TreeEnsemble | _Delegate


# --------------------------------------------------------------------------- the fast path


class FastPath:
    """predict_proba on rows of values in schema order, equal to the Pipeline it was derived from."""

    def __init__(
        self,
        names: Sequence[str],
        numeric_positions: Sequence[int],
        categorical_positions: Sequence[int],
        blocks: Sequence[_Block],
        between: Sequence[_NumericStep],
        estimator: _Estimator,
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
        if isinstance(est, _TreeEnsemble):
            return n_rows <= TREE_WALK_MAX_ROWS
        return isinstance(est, _Linear)

    def variants(self) -> list[tuple[str, Callable[[Sequence[Row]], FloatArray], bool]]:
        """Every way a batch may be computed: (name, function, whether it serves single rows), so
        `verify` can prove each one on the batch sizes it will see."""
        est = self._estimator
        if isinstance(est, _TreeEnsemble):
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
    blocks = _derive_columns(ct, schema, numeric, categorical)
    width = sum(b.width for b in blocks)

    between: list[_NumericStep] = []
    for name, step in middle:
        numeric_step = _numeric_step(name, step, width)
        if isinstance(numeric_step, _ImputeNumbers) and numeric_step.indicator is not None:
            width += len(numeric_step.indicator)
        between.append(numeric_step)

    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and n_in != width:
        raise UnsupportedPipeline(
            f"estimator expects {n_in} columns, the derived steps give {width}"
        )
    if hasattr(estimator, "feature_names_in_"):
        raise UnsupportedPipeline(
            f"estimator {est_name!r} was fitted on named columns; the fast path passes a matrix"
        )
    compiled, what = _derive_estimator(estimator)
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


def _derive_columns(
    ct: ColumnTransformer, schema: FeatureSchema, numeric: list[int], categorical: list[int]
) -> list[_Block]:
    if getattr(ct, "sparse_output_", False):
        raise UnsupportedPipeline("the ColumnTransformer produces sparse output")
    position = {name: i for i, name in enumerate(schema.names)}
    numeric_index = {pos: k for k, pos in enumerate(numeric)}
    categorical_index = {pos: k for k, pos in enumerate(categorical)}
    blocks: list[_Block] = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or _is_empty(columns):
            continue
        if not (isinstance(columns, list | tuple) and all(isinstance(c, str) for c in columns)):
            raise UnsupportedPipeline(f"transformer {name!r} selects columns by {columns!r}")
        unknown = [c for c in columns if c not in position]
        if unknown:
            raise UnsupportedPipeline(f"transformer {name!r} reads non-feature columns {unknown}")
        kinds = {pos in numeric_index for pos in (position[c] for c in columns)}
        if len(kinds) != 1:
            raise UnsupportedPipeline(f"transformer {name!r} mixes numeric and categorical columns")
        is_numeric = kinds.pop()
        index = numeric_index if is_numeric else categorical_index
        inputs = np.array([index[position[c]] for c in columns], dtype=np.intp)
        steps = _flatten(transformer)
        block = _derive_block(name, is_numeric, inputs, steps)
        expected = ct.output_indices_.get(name)
        if expected is not None and expected.stop - expected.start != block.width:
            raise UnsupportedPipeline(
                f"transformer {name!r}: derived {block.width} columns, the fitted one gives "
                f"{expected.stop - expected.start}"
            )
        blocks.append(block)
    if not blocks:
        raise UnsupportedPipeline("the ColumnTransformer uses no columns")
    return blocks


def _is_empty(columns: Any) -> bool:
    try:
        return len(columns) == 0
    except TypeError:
        return False


def _flatten(transformer: Any) -> list[tuple[str, Any]]:
    if transformer == "passthrough":
        return []
    if isinstance(transformer, Pipeline):
        return [(n, s) for n, s in transformer.steps if s not in (None, "passthrough")]
    return [(type(transformer).__name__, transformer)]


def _derive_block(
    name: str, is_numeric: bool, inputs: IntArray, steps: list[tuple[str, Any]]
) -> _Block:
    width = len(inputs)
    before: list[_CategoricalStep] = []
    after: list[_NumericStep] = []
    encoded = is_numeric
    for step_name, step in steps:
        where = f"{name}/{step_name}"
        if not encoded:
            if isinstance(step, SimpleImputer):
                before.append(_fill_categories(where, step))
            elif isinstance(step, OneHotEncoder):
                one_hot = _one_hot(where, step)
                before.append(one_hot)
                width = one_hot.width
                encoded = True
            else:
                raise UnsupportedPipeline(
                    f"step {where!r} is a {type(step).__name__}; on categories the fast path "
                    "knows SimpleImputer and OneHotEncoder"
                )
        else:
            numeric_step = _numeric_step(where, step, width)
            if isinstance(numeric_step, _ImputeNumbers) and numeric_step.indicator is not None:
                width += len(numeric_step.indicator)
            after.append(numeric_step)
    if not encoded:
        raise UnsupportedPipeline(f"transformer {name!r} passes categories through unencoded")
    return _Block(name, is_numeric, inputs, tuple(before), tuple(after), width)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _numeric_step(where: str, step: Any, width: int) -> _NumericStep:
    if isinstance(step, SimpleImputer):
        if not _is_nan(step.missing_values):
            raise UnsupportedPipeline(f"step {where!r} imputes {step.missing_values!r}, not NaN")
        statistics = np.asarray(step.statistics_, dtype=np.float64)
        if np.isnan(statistics).any() and not step.keep_empty_features:
            raise UnsupportedPipeline(f"step {where!r} drops columns it saw no values for")
        indicator: IntArray | None = None
        if step.add_indicator:
            ind = step.indicator_
            if ind.error_on_new or ind.sparse is True:
                raise UnsupportedPipeline(
                    f"step {where!r} has a missing indicator it cannot mirror"
                )
            indicator = np.asarray(ind.features_, dtype=np.intp)
        if len(statistics) != width:
            raise UnsupportedPipeline(f"step {where!r} was fitted on {len(statistics)} columns")
        return _ImputeNumbers(statistics, indicator)
    if isinstance(step, StandardScaler):
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
        scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
        for arr in (mean, scale):
            if arr is not None and len(arr) != width:
                raise UnsupportedPipeline(f"step {where!r} was fitted on {len(arr)} columns")
        return _Scale(mean, scale)
    raise UnsupportedPipeline(
        f"step {where!r} is a {type(step).__name__}; on numbers the fast path knows "
        "SimpleImputer and StandardScaler"
    )


def _fill_categories(where: str, step: SimpleImputer) -> _FillCategories:
    if not _is_nan(step.missing_values):
        raise UnsupportedPipeline(f"step {where!r} imputes {step.missing_values!r}, not NaN")
    if step.add_indicator:
        raise UnsupportedPipeline(f"step {where!r} adds a missing indicator to categories")
    fill = tuple(step.statistics_.tolist())
    if any(v is None or _is_nan(v) for v in fill):
        raise UnsupportedPipeline(f"step {where!r} drops columns it saw no values for")
    return _FillCategories(fill)


def _one_hot(where: str, enc: OneHotEncoder) -> _OneHot:
    if getattr(enc, "drop_idx_", None) is not None:
        raise UnsupportedPipeline(f"step {where!r} drops a category (drop={enc.drop!r})")
    if enc.handle_unknown == "error":
        raise UnsupportedPipeline(f"step {where!r} raises on unseen categories")
    # Absent unless min_frequency or max_categories grouped rare categories.
    infrequent = getattr(enc, "infrequent_categories_", None) or [None] * len(enc.categories_)
    tables: list[dict[Any, int]] = []
    unknowns: list[int] = []
    offsets: list[int] = []
    width = 0
    for cats, rare in zip(enc.categories_, infrequent, strict=True):
        rare_set = set() if rare is None else set(rare.tolist())
        table: dict[Any, int] = {}
        column = 0
        for c in cats.tolist():
            if not (isinstance(c, str) or _is_nan(c)):
                raise UnsupportedPipeline(f"step {where!r} has non-text category {c!r}")
            if c in rare_set:
                continue
            # A NaN category (no imputer before the encoder) is what a missing value matches.
            table[None if _is_nan(c) else c] = column
            column += 1
        unknown = -1
        if rare_set:
            for c in rare_set:
                table[None if _is_nan(c) else c] = column
            if enc.handle_unknown == "infrequent_if_exist":
                unknown = column
            column += 1
        tables.append(table)
        unknowns.append(unknown)
        offsets.append(width)
        width += column
    if width != len(enc.get_feature_names_out()):
        raise UnsupportedPipeline(f"step {where!r}: derived {width} columns, it gives more")
    return _OneHot(tuple(tables), tuple(unknowns), tuple(offsets), width)


def _derive_estimator(est: Any) -> tuple[_Estimator, str]:
    if not hasattr(est, "predict_proba"):
        raise UnsupportedPipeline(f"the final step {type(est).__name__} has no predict_proba")
    if isinstance(est, LogisticRegression):
        coef = np.asarray(est.coef_, dtype=np.float64)
        intercept = np.asarray(est.intercept_, dtype=np.float64)
        return _Linear(coef, intercept, len(est.classes_) <= 2), "LogisticRegression in numpy"
    if isinstance(est, HistGradientBoostingClassifier):
        forest = _hist_forest(est)
        if forest is not None:
            loss = est._loss  # the estimator's own link from raw scores to probabilities
            return (
                _TreeEnsemble(forest, loss.predict_proba, est),
                f"{len(forest.roots) - 1} HistGradientBoosting trees walked in numpy "
                f"(batches > {TREE_WALK_MAX_ROWS} rows: the estimator's predict_proba)",
            )
    if isinstance(
        est,
        RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier,
    ):
        forest = _sklearn_forest(est)
        if forest is not None:
            return (
                _TreeEnsemble(forest, lambda s: s, est),
                f"{len(forest.roots)} {type(est).__name__} trees walked in numpy "
                f"(batches > {TREE_WALK_MAX_ROWS} rows: the estimator's predict_proba)",
            )
    return _Delegate(est), f"{type(est).__name__}.predict_proba on the matrix"


def _stack(trees: list[dict[str, Any]], n_outputs: int, as_float32: bool, depth: int) -> _Forest:
    """Concatenate per-tree node arrays, offsetting child indices; leaves loop to themselves."""
    offsets = np.cumsum([0] + [len(t["feature"]) for t in trees])
    feature, threshold, missing_left, left, right, values = [], [], [], [], [], []
    for t, start in zip(trees, offsets[:-1].tolist(), strict=True):
        n = len(t["feature"])
        own = np.arange(n, dtype=np.intp) + start
        leaf = t["leaf"]
        feature.append(np.where(leaf, 0, t["feature"]).astype(np.intp))
        threshold.append(t["threshold"].astype(np.float64))
        missing_left.append(t["missing_left"].astype(bool))
        left.append(np.where(leaf, own, t["left"].astype(np.intp) + start))
        right.append(np.where(leaf, own, t["right"].astype(np.intp) + start))
        v = np.zeros((n, n_outputs), dtype=np.float64)
        v[leaf] = t["values"][leaf]
        values.append(v)
    return _Forest(
        roots=offsets[:-1].astype(np.intp),
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        missing_left=np.concatenate(missing_left),
        left=np.concatenate(left),
        right=np.concatenate(right),
        values=np.concatenate(values),
        depth=depth,
        as_float32=as_float32,
    )


def _hist_forest(est: HistGradientBoostingClassifier) -> _Forest | None:
    if getattr(est, "_preprocessor", None) is not None:
        return None  # native categorical support: left to the estimator
    k = est.n_trees_per_iteration_
    trees: list[dict[str, Any]] = []
    depth = 0
    for iteration in est._predictors:
        for cls, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            leaf = nodes["is_leaf"].astype(bool)
            values = np.zeros((len(nodes), k), dtype=np.float64)
            values[:, cls] = nodes["value"]
            depth = max(depth, int(nodes["depth"].max()))
            trees.append(
                {
                    "leaf": leaf,
                    "feature": nodes["feature_idx"],
                    "threshold": nodes["num_threshold"],
                    "missing_left": nodes["missing_go_to_left"],
                    "left": nodes["left"],
                    "right": nodes["right"],
                    "values": values,
                }
            )
    forest = _stack(trees, k, as_float32=False, depth=depth)
    baseline = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(1, k)
    # The baseline joins the sum as one more tree, of a single leaf.
    return _Forest(
        roots=np.append(forest.roots, len(forest.feature)).astype(np.intp),
        feature=np.append(forest.feature, 0).astype(np.intp),
        threshold=np.append(forest.threshold, 0.0),
        missing_left=np.append(forest.missing_left, False),
        left=np.append(forest.left, len(forest.feature)).astype(np.intp),
        right=np.append(forest.right, len(forest.feature)).astype(np.intp),
        values=np.vstack([forest.values, baseline]),
        depth=forest.depth,
        as_float32=False,
    )


def _sklearn_forest(
    est: RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier,
) -> _Forest | None:
    if est.n_outputs_ != 1:
        return None
    members = est.estimators_ if hasattr(est, "estimators_") else [est]
    n_classes = len(est.classes_)
    trees: list[dict[str, Any]] = []
    depth = 0
    for member in members:
        if not isinstance(member, DecisionTreeClassifier | ExtraTreeClassifier):
            return None
        t = member.tree_
        if t.value.shape[2] != n_classes:
            return None
        leaf = t.children_left == -1
        depth = max(depth, int(t.max_depth))
        trees.append(
            {
                "leaf": leaf,
                "feature": t.feature,
                "threshold": t.threshold,
                "missing_left": t.missing_go_to_left,
                "left": t.children_left,
                "right": t.children_right,
                # Leaf values are class fractions; an ensemble averages them over its trees.
                "values": t.value[:, 0, :] / len(members),
            }
        )
    return _stack(trees, n_classes, as_float32=True, depth=depth)


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

    Raises UnsupportedPipeline when any variant differs by more than the card's tolerance, or the
    classes differ.
    """
    if list(pipeline.classes_) != fast.classes:
        raise UnsupportedPipeline("the derived classes differ from the pipeline's")
    want = np.asarray(pipeline.predict_proba(frame_from_records(schema, records)), dtype=np.float64)
    rows = rows_from_records(schema, records)
    worst = 0.0
    for name, variant, single_rows in fast.variants():
        # One-row batches take other shapes through numpy; prove them where they will be served.
        for chunk in (len(rows), 1) if single_rows else (len(rows),):
            got = np.vstack([variant(rows[i : i + chunk]) for i in range(0, len(rows), chunk)])
            if got.shape != want.shape:
                raise UnsupportedPipeline(
                    f"{name}: shape {got.shape}, the pipeline gives {want.shape}"
                )
            diff = float(np.max(np.abs(got - want))) if want.size else 0.0
            if not diff <= REFERENCE_TOLERANCE:
                raise UnsupportedPipeline(
                    f"{name}: max |Δp| = {diff:.3g} from the pipeline (> {REFERENCE_TOLERANCE:g})"
                )
            worst = max(worst, diff)
    return worst
