"""A fitted classifier in; its predict_proba on a numpy matrix out: the linear model's arithmetic,
every tree of an ensemble walked at once in numpy, or the estimator's own predict_proba.

scikit-learn keeps HistGradientBoosting's trees, baseline and link in private attributes, and the
trees of its other ensembles in `tree_` arrays. Each family's reading of them is one function here
(`_hist_gradient_boosting_trees`, `_decision_trees`); when a scikit-learn release changes what they
hold, that function fails with UnsupportedPipeline naming the attribute and the release, and the
estimator's own predict_proba is used on the derived matrix instead. Large HistGradientBoosting
batches call its compiled per-tree function directly (`_hist_gradient_boosting_batches`); where a
release moved it, they go to its predict_proba. What changes meaning without failing (a field
renamed onto another) is caught by `verify`, which compares every variant with the Pipeline when
the model loads and sends rows to the Pipeline if any differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from scipy.special import expit, softmax
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from modelops.serve.fastpath.steps import UnsupportedPipeline
from modelops.types import FloatArray, IndexArray

# Walking every tree in numpy costs O(rows x trees x depth) element operations; the estimator's own
# compiled code wins once a batch is larger than this, so bigger batches go to it instead.
TREE_WALK_MAX_ROWS = 32


@dataclass(frozen=True)
class Linear:
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
class Forest:
    """Every tree of an ensemble stacked into flat arrays, walked for all trees at once.

    Each node has two slots, 2k (its right branch) and 2k + 1 (its left branch), and every array
    is indexed by slot, so one step of the walk is `slot = children[slot + go_left]`: one gather
    where choosing between a left and a right array took two and a select (a quarter to a third
    less time per walk at 8 to 32 rows). Leaves lead to their own slot, so `depth` steps bring
    every row to its leaf in every tree. `values[slot]` holds the leaf's contribution to each
    output column.
    """

    roots: IndexArray  # the root's slot, per tree
    feature: IndexArray
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]
    children: IndexArray
    values: FloatArray  # (2 x n_nodes, n_outputs)
    depth: int
    as_float32: bool  # sklearn trees compare float32 inputs; HistGradientBoosting keeps float64

    def leaf_sum(self, x: FloatArray) -> FloatArray:
        if self.as_float32:
            x = x.astype(np.float32).astype(np.float64)
        n, n_features = x.shape
        flat = x.reshape(-1)
        base = (np.arange(n, dtype=np.intp) * n_features)[:, None]
        slot = np.broadcast_to(self.roots, (n, len(self.roots)))
        any_missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            value = flat.take(base + self.feature.take(slot))
            go_left = value <= self.threshold.take(slot)
            if any_missing:
                go_left = np.where(np.isnan(value), self.missing_left.take(slot), go_left)
            slot = self.children.take(slot + go_left)
        summed: FloatArray = self.values.take(slot, axis=0).sum(axis=1)
        return summed


@dataclass(frozen=True)
class TreeEnsemble:
    """Compiled trees for small batches, the estimator's own compiled code for large ones."""

    forest: Forest
    finish: Callable[[FloatArray], FloatArray]  # summed leaf values -> probabilities
    estimator: Any
    # Large batches through the estimator's compiled trees without its per-call work (see
    # HistGradientBoostingBatches); None: its predict_proba.
    batches: Callable[[FloatArray], FloatArray] | None = None

    def __call__(self, x: FloatArray) -> FloatArray:
        if x.shape[0] <= TREE_WALK_MAX_ROWS:
            return self.walk(x)
        return self.delegate(x)

    def walk(self, x: FloatArray) -> FloatArray:
        return self.finish(self.forest.leaf_sum(x))

    def delegate(self, x: FloatArray) -> FloatArray:
        if self.batches is not None:
            return self.batches(x)
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)


@dataclass(frozen=True)
class HistGradientBoostingBatches:
    """HistGradientBoosting's predict_proba as it computes it: the baseline, then each tree's
    compiled prediction added in its order, then the loss's link; the same arithmetic in the same
    order, so the same bits. What its predict_proba also does on every call is done once here: the
    input check (the derived matrix is float64 of the fitted width by construction), the categorical
    bitsets rebuilt, and a `partial` and an output array per tree. For 1000 rows and 250 trees of 8
    leaves that per-call work was ~0.8 of 8.4 ms (measured on one core)."""

    predict_tree: Callable[..., None]  # (nodes, X, left bitsets, known bitsets, map, threads, out)
    trees: list[list[tuple[Any, Any]]]  # per iteration, per class: (nodes, left-category bitsets)
    baseline: FloatArray  # (1, classes' columns)
    known_categories: Any
    feature_map: Any
    threads: Callable[[], int]  # the OpenMP threads the estimator would use now
    link: Callable[[FloatArray], FloatArray]

    def __call__(self, x: FloatArray) -> FloatArray:
        n, threads = x.shape[0], self.threads()
        raw = np.zeros((n, self.baseline.shape[1]), order="F")
        raw += self.baseline
        columns = [raw[:, k] for k in range(raw.shape[1])]
        out = np.empty(n)
        for iteration in self.trees:
            for column, (nodes, left) in zip(columns, iteration, strict=True):
                self.predict_tree(
                    nodes, x, left, self.known_categories, self.feature_map, threads, out
                )
                column += out
        return np.asarray(self.link(raw), dtype=np.float64)


@dataclass(frozen=True)
class Delegate:
    """Any other classifier: its own predict_proba, on the matrix (no DataFrame on the way)."""

    estimator: Any

    def __call__(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)


Estimator = Linear | TreeEnsemble | Delegate


_WALKED_TREES = (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)
# What reading or running on an estimator's internals raises when a scikit-learn release changed
# them: an attribute gone, a field renamed, an array of another shape or type.
CHANGED_INTERNALS = (AttributeError, KeyError, IndexError, TypeError, ValueError)


def derive_estimator(est: Any) -> tuple[Estimator, str]:
    """The estimator's predict_proba on a matrix, and a description of how it is computed."""
    if not hasattr(est, "predict_proba"):
        raise UnsupportedPipeline(f"the final step {type(est).__name__} has no predict_proba")
    name = type(est).__name__
    if isinstance(est, LogisticRegression):
        coef = np.asarray(est.coef_, dtype=np.float64)
        intercept = np.asarray(est.intercept_, dtype=np.float64)
        return Linear(coef, intercept, len(est.classes_) <= 2), "LogisticRegression in numpy"
    try:
        walked = _walkable(est)
    except UnsupportedPipeline as exc:
        return Delegate(est), f"{name}.predict_proba on the matrix (trees not walked: {exc})"
    if walked is None:
        return Delegate(est), f"{name}.predict_proba on the matrix"
    forest, finish, trees = walked
    batches = (
        _hist_gradient_boosting_batches(est)
        if isinstance(est, HistGradientBoostingClassifier)
        else None
    )
    return (
        TreeEnsemble(forest, finish, est, batches),
        f"{trees} {name} trees walked in numpy "
        f"(batches > {TREE_WALK_MAX_ROWS} rows: the estimator's "
        f"{'compiled trees' if batches is not None else 'predict_proba'})",
    )


def _walkable(est: Any) -> tuple[Forest, Callable[[FloatArray], FloatArray], int] | None:
    """The forest of a tree ensemble the walk supports, its link to probabilities and its tree
    count; None for other estimators. UnsupportedPipeline when the internals are not as read."""
    try:
        if isinstance(est, HistGradientBoostingClassifier):
            return _hist_gradient_boosting_trees(est)
        if isinstance(est, _WALKED_TREES):
            return _decision_trees(est)
    except CHANGED_INTERNALS as exc:
        raise UnsupportedPipeline(
            f"its internals in scikit-learn {sklearn.__version__} are not the ones this "
            f"version of modelops reads ({type(exc).__name__}: {exc})"
        ) from None
    return None


def _stack(trees: list[dict[str, Any]], n_outputs: int, as_float32: bool) -> Forest:
    """Concatenate per-tree node arrays into slot arrays (see Forest), offsetting child indices;
    leaves lead to themselves."""
    offsets = np.cumsum([0] + [len(t["feature"]) for t in trees])
    feature, threshold, missing_left, children, values = [], [], [], [], []
    for t, start in zip(trees, offsets[:-1].tolist(), strict=True):
        n = len(t["feature"])
        own = np.arange(n, dtype=np.intp) + start
        leaf = t["leaf"]
        feature.append(np.where(leaf, 0, t["feature"]).astype(np.intp))
        threshold.append(t["threshold"].astype(np.float64))
        missing_left.append(t["missing_left"].astype(bool))
        right = np.where(leaf, own, t["right"].astype(np.intp) + start)
        left = np.where(leaf, own, t["left"].astype(np.intp) + start)
        children.append(2 * np.stack([right, left], axis=1).reshape(-1))  # slot 2k: right
        v = np.zeros((n, n_outputs), dtype=np.float64)
        v[leaf] = t["values"][leaf]
        values.append(v)
    return Forest(
        roots=2 * offsets[:-1].astype(np.intp),
        feature=np.repeat(np.concatenate(feature), 2),
        threshold=np.repeat(np.concatenate(threshold), 2),
        missing_left=np.repeat(np.concatenate(missing_left), 2),
        children=np.concatenate(children),
        values=np.repeat(np.concatenate(values), 2, axis=0),
        depth=max(t["depth"] for t in trees),
        as_float32=as_float32,
    )


# --------------------------------------------------------------------------- scikit-learn's internals
# Everything below reads attributes scikit-learn does not promise to keep. Each family's reading is
# one function; a KeyError, AttributeError, ... from a changed release becomes UnsupportedPipeline
# in `_walkable`, and the estimator's own predict_proba is used instead.


def _hist_gradient_boosting_trees(
    est: HistGradientBoostingClassifier,
) -> tuple[Forest, Callable[[FloatArray], FloatArray], int] | None:
    """HistGradientBoosting's trees (`_predictors`: per iteration, per class, a predictor whose
    `nodes` record array holds each node), its `_baseline_prediction` and its `_loss` link.
    None when it uses native categorical support (`_preprocessor`), which is left to the estimator."""
    if est._preprocessor is not None:
        return None
    k = est.n_trees_per_iteration_
    baseline = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(1, k)
    link = est._loss.predict_proba  # the estimator's own link from raw scores to probabilities
    trees: list[dict[str, Any]] = []
    for iteration in est._predictors:
        for cls, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                return None
            values = np.zeros((len(nodes), k), dtype=np.float64)
            values[:, cls] = nodes["value"]
            trees.append(
                {
                    "leaf": nodes["is_leaf"].astype(bool),
                    "feature": nodes["feature_idx"],
                    "threshold": nodes["num_threshold"],
                    "missing_left": nodes["missing_go_to_left"],
                    "left": nodes["left"],
                    "right": nodes["right"],
                    "values": values,
                    "depth": int(nodes["depth"].max()),
                }
            )
    # The baseline joins the sum as one more tree, of a single leaf.
    trees.append(_single_leaf(baseline))
    return _stack(trees, k, as_float32=False), link, len(trees) - 1


def _hist_gradient_boosting_batches(
    est: HistGradientBoostingClassifier,
) -> HistGradientBoostingBatches | None:
    """The compiled per-tree prediction `_predict_iterations` calls (`_predictor`'s
    `_predict_from_raw_data`), with the arguments it passes; None, and the estimator's own
    predict_proba, when this release has them elsewhere. Only for estimators whose trees were read
    above (no native categorical support)."""
    try:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:
        return None
    try:
        known, feature_map = est._bin_mapper.make_known_categories_bitsets()
        trees = [[(p.nodes, p.raw_left_cat_bitsets) for p in it] for it in est._predictors]
        baseline = np.asarray(est._baseline_prediction, dtype=np.float64)
        baseline = baseline.reshape(1, est.n_trees_per_iteration_)
        link = est._loss.predict_proba
    except CHANGED_INTERNALS:
        return None
    return HistGradientBoostingBatches(
        _predict_from_raw_data,
        trees,
        baseline,
        known,
        feature_map,
        _openmp_effective_n_threads,
        link,
    )


def _single_leaf(values: FloatArray) -> dict[str, Any]:
    zero = np.zeros(1, dtype=np.intp)
    return {
        "leaf": np.ones(1, dtype=bool),
        "feature": zero,
        "threshold": np.zeros(1),
        "missing_left": np.zeros(1, dtype=bool),
        "left": zero,
        "right": zero,
        "values": values,
        "depth": 0,
    }


def _decision_trees(
    est: RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier,
) -> tuple[Forest, Callable[[FloatArray], FloatArray], int] | None:
    """The `tree_` arrays of a decision tree or of each member of a forest; leaf values are class
    fractions, which a forest averages over its members. None for multi-output trees."""
    if est.n_outputs_ != 1:
        return None
    members = est.estimators_ if hasattr(est, "estimators_") else [est]
    n_classes = len(est.classes_)
    trees: list[dict[str, Any]] = []
    for member in members:
        if not isinstance(member, DecisionTreeClassifier | ExtraTreeClassifier):
            return None
        t = member.tree_
        if t.value.shape[2] != n_classes:
            return None
        trees.append(
            {
                "leaf": t.children_left == -1,
                "feature": t.feature,
                "threshold": t.threshold,
                "missing_left": t.missing_go_to_left,
                "left": t.children_left,
                "right": t.children_right,
                "values": t.value[:, 0, :] / len(members),
                "depth": int(t.max_depth),
            }
        )
    return _stack(trees, n_classes, as_float32=True), _identity, len(trees)


def _identity(summed: FloatArray) -> FloatArray:
    return summed
