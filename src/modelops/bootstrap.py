"""Labels and two models' probabilities on the same rows in; the paired bootstrap interval of their
difference in one metric, and DeLong's test for two ROC AUCs, out (numpy only, no I/O).

A bootstrap resample is a vector of counts: how often each row was drawn. Every metric here is a
function of count-weighted sums, so B resamples are one (B, rows) matrix and a few matrix operations
instead of B calls to scikit-learn; both models are scored on the same resamples, which is what
makes the difference paired. With every count 1 a kernel gives `evaluation.classification_metrics`'
value; the tests hold each kernel equal to scikit-learn's with `sample_weight` for random counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from modelops.errors import ParamsError
from modelops.evaluation import predict_labels

Floats = npt.NDArray[np.float64]
Kernel = Callable[[Floats], Floats]  # (B, rows) counts -> (B,) metric values

CHUNK = 200  # resamples drawn and scored at a time: memory stays at CHUNK x rows floats
_MEANS = ("accuracy", "log_loss", "brier")
_BINARY_COUNTS = ("precision", "recall", "f1")
_EPS = float(
    np.finfo(np.float64).eps
)  # scikit-learn's log_loss clips probabilities to [eps, 1-eps]


class Interval(NamedTuple):
    """Candidate minus champion in one metric: on all rows, and the bootstrap interval's bounds."""

    delta: float
    low: float
    high: float
    undefined: int  # resamples where the metric has no value (e.g. no row of a class was drawn)


def paired_difference(
    metric: str,
    y: npt.NDArray[Any],
    candidate: Floats,
    champion: Floats,
    classes: Sequence[Any],
    positive: Any,
    threshold: float,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """The percentile interval of `metric(candidate) - metric(champion)` over `resamples` paired
    bootstrap resamples of the rows, drawn from `seed`."""
    a = kernel(metric, y, candidate, classes, positive, threshold)
    b = kernel(metric, y, champion, classes, positive, threshold)
    n = len(y)
    ones = np.ones((1, n))
    delta = float(a(ones)[0] - b(ones)[0])
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, resamples, CHUNK):
        counts = resample_counts(rng, n, min(CHUNK, resamples - start))
        parts.append(a(counts) - b(counts))
    diffs = np.concatenate(parts)
    defined = diffs[np.isfinite(diffs)]
    if len(defined) < resamples / 2:
        raise ParamsError(
            f"gate.metric '{metric}' has no value on {resamples - len(defined)} of {resamples} "
            f"bootstrap resamples of {n} rows (a class is too rare); choose another metric or "
            "test on more rows"
        )
    low, high = np.quantile(defined, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(delta, float(low), float(high), resamples - len(defined))


def resample_counts(rng: np.random.Generator, n: int, b: int) -> Floats:
    """`b` bootstrap resamples of `n` rows, as a (b, n) matrix of how often each row was drawn."""
    drawn = rng.integers(0, n, size=(b, n))
    flat = (np.arange(b)[:, None] * n + drawn).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def kernel(
    metric: str,
    y: npt.NDArray[Any],
    proba: Floats,
    classes: Sequence[Any],
    positive: Any,
    threshold: float,
) -> Kernel:
    """`metric` of one model's probabilities as a function of row counts, for any metric evaluate
    writes for this target."""
    labels = list(classes)
    binary = len(labels) == 2
    if metric in _MEANS:
        values = _row_values(metric, y, proba, labels, positive, threshold)
        return lambda w: _ratio(w @ values, w.sum(axis=1))
    if binary and metric in ("roc_auc", "average_precision"):
        ranked = _Ranked(proba[:, labels.index(positive)], y == positive)
        return ranked.auc if metric == "roc_auc" else ranked.average_precision
    if binary and metric in _BINARY_COUNTS:
        return _binary_counts(metric, y == positive, proba[:, labels.index(positive)] >= threshold)
    if not binary and metric.rsplit("_", 1)[-1] in ("macro", "weighted"):
        base, average = metric.rsplit("_", 1)
        if base in ("roc_auc", "average_precision"):
            return _one_vs_rest(base, average, y, proba, labels)
        if base == "f1":
            pred = predict_labels(proba, labels, positive, threshold)
            return _f1_per_class(average, y, pred, labels)
    target = "binary" if binary else "multiclass"
    raise ParamsError(
        f"params.yaml: gate.metric: '{metric}' is not a metric evaluate writes for this {target} "
        "target (see metrics/metrics.json)"
    )


def _ratio(num: Floats, den: Floats) -> Floats:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _row_values(
    metric: str,
    y: npt.NDArray[Any],
    proba: Floats,
    labels: list[Any],
    positive: Any,
    threshold: float,
) -> Floats:
    """Per-row values whose weighted mean is the metric: 1 for a right label, the log loss, the
    Brier score (binary: on the positive class, as scikit-learn scores it)."""
    if metric == "accuracy":
        return (predict_labels(proba, labels, positive, threshold) == y).astype(np.float64)
    onehot = np.column_stack([y == c for c in labels]).astype(np.float64)
    if metric == "log_loss":
        return -np.log(np.clip((proba * onehot).sum(axis=1), _EPS, 1 - _EPS))
    if len(labels) == 2:
        pos = labels.index(positive)
        return np.asarray((proba[:, pos] - onehot[:, pos]) ** 2, dtype=np.float64)
    return np.asarray(((proba - onehot) ** 2).sum(axis=1), dtype=np.float64)


class _Ranked:
    """One score column against a yes/no truth, sorted once (highest first) and grouped by distinct
    score: the shape of every threshold curve, so AUC and average precision are cumulative sums."""

    def __init__(self, score: Floats, truth: npt.NDArray[np.bool_]) -> None:
        self.order = np.argsort(-score, kind="stable")
        ordered = score[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.tied = len(self.starts) < len(score)
        self.truth = truth[self.order].astype(np.float64)

    def _groups(self, w: Floats) -> tuple[Floats, Floats]:
        """Counted positives and negatives at each distinct score, highest score first."""
        ordered = w[:, self.order]
        pos = ordered * self.truth
        if self.tied:
            ordered = np.add.reduceat(ordered, self.starts, axis=1)
            pos = np.add.reduceat(pos, self.starts, axis=1)
        return pos, ordered - pos

    def auc(self, w: Floats) -> Floats:
        """Mann-Whitney: the share of (positive, negative) pairs ranked right, ties counting half."""
        pos, neg = self._groups(w)
        below = neg.sum(axis=1, keepdims=True) - np.cumsum(neg, axis=1)
        return _ratio((pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))

    def average_precision(self, w: Floats) -> Floats:
        """Precision at each threshold, weighted by the recall it adds (scikit-learn's definition)."""
        pos, neg = self._groups(w)
        tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=tps + fps > 0)
        return _ratio((pos * precision).sum(axis=1), tps[:, -1])


def _binary_counts(
    metric: str, truth: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]
) -> Kernel:
    tp_rows = (truth & predicted).astype(np.float64)
    fp_rows = (~truth & predicted).astype(np.float64)
    fn_rows = (truth & ~predicted).astype(np.float64)

    def score(w: Floats) -> Floats:
        tp, fp, fn = w @ tp_rows, w @ fp_rows, w @ fn_rows
        num = 2 * tp if metric == "f1" else tp
        den = {"precision": tp + fp, "recall": tp + fn, "f1": 2 * tp + fp + fn}[metric]
        # scikit-learn's zero_division: 0 when nothing was predicted (or is) positive
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return score


def _one_vs_rest(
    base: str, average: str, y: npt.NDArray[Any], proba: Floats, labels: list[Any]
) -> Kernel:
    ranked = [_Ranked(proba[:, i], y == c) for i, c in enumerate(labels)]
    support = np.column_stack([y == c for c in labels]).astype(np.float64)

    def score(w: Floats) -> Floats:
        per_class = np.column_stack(
            [r.auc(w) if base == "roc_auc" else r.average_precision(w) for r in ranked]
        )
        if average == "macro":
            return np.asarray(per_class.mean(axis=1), dtype=np.float64)
        weights = w @ support
        return _ratio((per_class * weights).sum(axis=1), weights.sum(axis=1))

    return score


def _f1_per_class(
    average: str, y: npt.NDArray[Any], pred: npt.NDArray[Any], labels: list[Any]
) -> Kernel:
    # scikit-learn averages over the labels present in the truth or the predictions
    present = [c for c in labels if (y == c).any() or (pred == c).any()]
    tp = np.column_stack([(y == c) & (pred == c) for c in present]).astype(np.float64)
    true = np.column_stack([y == c for c in present]).astype(np.float64)
    predicted = np.column_stack([pred == c for c in present]).astype(np.float64)

    def score(w: Floats) -> Floats:
        hits, support = w @ tp, w @ true
        den = w @ predicted + support
        f1 = np.divide(2 * hits, den, out=np.zeros_like(hits), where=den > 0)
        if average == "macro":
            return np.asarray(f1.mean(axis=1), dtype=np.float64)
        return _ratio((f1 * support).sum(axis=1), support.sum(axis=1))

    return score


# ------------------------------------------------------------------------------------ DeLong


class DeLong(NamedTuple):
    """DeLong's test that two ROC AUCs on the same rows are equal: z of the difference, p-value."""

    auc_candidate: float
    auc_champion: float
    z: float
    p_value: float


def delong(truth: npt.NDArray[np.bool_], candidate: Floats, champion: Floats) -> DeLong:
    """DeLong, DeLong and Clarke-Pearson (1988) in Sun and Xu's (2014) midrank form."""
    pos = np.flatnonzero(truth)
    neg = np.flatnonzero(~truth)
    m, n = len(pos), len(neg)
    aucs, v10, v01 = [], [], []
    for score in (candidate, champion):
        tx, ty = _midrank(score[pos]), _midrank(score[neg])
        tz = _midrank(np.concatenate([score[pos], score[neg]]))
        aucs.append(float((tz[:m].sum() / m - (m + 1) / 2) / n))
        v10.append((tz[:m] - tx) / n)  # per positive: share of negatives it outranks
        v01.append(1.0 - (tz[m:] - ty) / m)  # per negative: share of positives outranking it
    s = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n
    variance = float(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    diff = aucs[0] - aucs[1]
    z = diff / math.sqrt(variance) if variance > 0 else 0.0
    return DeLong(aucs[0], aucs[1], z, math.erfc(abs(z) / math.sqrt(2)))


def _midrank(x: Floats) -> Floats:
    """1-based ranks of `x`, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks
