"""Labelled predictions of one version and window, and that version's test metrics, in; the
metrics `evaluate` writes, the change against test with a bootstrap interval, and a status out.

**The rule** (`status`, its one home), per version and window, on the metric `performance.metric`:

    fewer than performance.min_labels labelled predictions        -> insufficient_data
    a class of the model absent from the labels (no ROC AUC)      -> insufficient_data
    no test metrics for the version                               -> insufficient_data
    worse than test by more than performance.max_drop, and the
    bootstrap interval of the change excludes 0 on the worse side -> degraded
    otherwise                                                     -> ok

"Worse" is lower for ROC AUC and accuracy, higher for log loss and the Brier score. The interval
is the percentile interval (`performance.confidence`) of `performance.resamples` stratified
resamples of the window's labelled predictions (every class keeps its count, so every resample
can be scored), seeded from base.seed, the version and the window: two runs give the same bytes.
The test metric is taken as exact: its own sampling error is not in the interval.

The window's metrics are `modelops.evaluation.classification_metrics`, as `evaluate` writes them.
A resample is scored on the judged metric alone, with the function `classification_metrics`
uses for it (`score`; tests/unit/test_performance.py holds the two equal): the whole set costs
six times as much per resample. ROC AUC, whose every call sorts again, is computed for all
resamples of a window from one sort (`auc_resamples`), held equal to sklearn's by the same tests.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import msgspec
import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.preprocessing import label_binarize

from modelops.evaluation import DIRECTIONS, Decision, classification_metrics, predict_labels
from modelops.params import PerformanceMetric as Metric
from modelops.performance.status import Status
from modelops.types import FloatArray, IntArray

if TYPE_CHECKING:
    from modelops.params import PerformanceParams
    from modelops.schema import Target

METRICS: tuple[Metric, ...] = get_args(Metric)
# Which way is better is evaluation.DIRECTIONS's rule, the champion gate's too.
HIGHER_IS_BETTER: dict[Metric, bool] = {m: DIRECTIONS[m] == "higher" for m in METRICS}


def metric_key(metric: Metric, n_classes: int) -> str:
    """The key of `metric` in metrics.json: multiclass ROC AUC is the macro average."""
    return "roc_auc_macro" if metric == "roc_auc" and n_classes > 2 else metric


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a window counts as degraded: see the module's docstring; the values (and their
    defaults) are params performance.*."""

    metric: Metric
    max_drop: float
    min_labels: int
    confidence: float
    resamples: int

    @classmethod
    def from_params(cls, params: PerformanceParams) -> Rule:
        return cls(
            params.metric, params.max_drop, params.min_labels, params.confidence, params.resamples
        )


class Change(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A window's judged metric against the version's test value: value − test, its interval."""

    metric: str  # the key in metrics.json
    test: float
    value: float
    change: float  # value − test
    low: float  # the bootstrap interval of the change
    high: float
    worse_by: float  # the change in the worse direction (negative: better than test)


@dataclass(frozen=True)
class Model:
    """What scoring a version needs: its classes in probability-column order, the positive
    class and the threshold it was evaluated (and so serves) with."""

    classes: list[Any]
    positive: Any
    threshold: float

    @classmethod
    def of(cls, target: Target, test_metrics: Mapping[str, Any] | None) -> Model:
        decision = Decision.of(target, test_metrics or {})
        # Without a recorded threshold a binary model labels by argmax, i.e. at 0.5.
        threshold = decision.threshold if decision.threshold is not None else 0.5
        return cls(list(target.classes), target.positive, threshold)

    def labels(self, index: IntArray) -> npt.NDArray[Any]:
        """Class positions as the labels themselves, typed as the classes are (int64 or str)."""
        y = np.asarray(self.classes, dtype=object)[index]
        return y.astype(np.int64) if all(isinstance(c, int) for c in self.classes) else y


def status(labels: int, rule: Rule, complete: bool, change: Change | None) -> tuple[Status, str]:
    """THE rule: a window's status and the reason, in words."""
    if labels < rule.min_labels:
        return "insufficient_data", f"{labels} labels, fewer than min_labels ({rule.min_labels})"
    if not complete:
        return "insufficient_data", "not every class of the model is among the labels"
    if change is None:
        return "insufficient_data", "no test metrics for this version to compare with"
    worse_low = -change.high if HIGHER_IS_BETTER[rule.metric] else change.low
    verdict = (
        f"{change.metric} {change.value:.4f} against {change.test:.4f} on test: "
        f"{change.change:+.4f} ({rule.confidence:.0%} interval {change.low:+.4f} to "
        f"{change.high:+.4f})"
    )
    if change.worse_by > rule.max_drop and worse_low > 0:
        return "degraded", f"{verdict}, worse by more than max_drop ({rule.max_drop:g})"
    return "ok", verdict


def window_metrics(y: npt.NDArray[Any], proba: FloatArray, model: Model) -> dict[str, Any] | None:
    """The metrics `evaluate` writes, on these labels; None unless every class is among them."""
    if len(np.unique(y)) < len(model.classes):
        return None
    return classification_metrics(y, proba, model.classes, model.positive, model.threshold)


def score(metric: Metric, y: npt.NDArray[Any], proba: FloatArray, model: Model) -> float:
    """One metric of `classification_metrics`, computed by the same function it uses."""
    classes = model.classes
    if metric == "log_loss":
        return float(log_loss(y, proba, labels=classes))
    if metric == "accuracy":
        return float(
            accuracy_score(y, predict_labels(proba, classes, model.positive, model.threshold))
        )
    if len(classes) == 2:
        p = proba[:, classes.index(model.positive)]
        if metric == "roc_auc":
            return float(roc_auc_score(y == model.positive, p))
        return float(brier_score_loss(y == model.positive, p))
    onehot = label_binarize(y, classes=classes)
    if metric == "roc_auc":
        return float(roc_auc_score(onehot, proba, average="macro"))
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def change(
    y_index: IntArray,
    proba: FloatArray,
    model: Model,
    rule: Rule,
    test: float,
    seed: Sequence[int],
) -> Change:
    """The judged metric on these labelled predictions against `test`, with a stratified
    bootstrap interval of the change."""
    y = model.labels(y_index)
    value = score(rule.metric, y, proba, model)
    rng = np.random.default_rng(list(seed))
    strata = [np.flatnonzero(y_index == k) for k in range(len(model.classes))]
    values = []
    for start in range(0, rule.resamples, _BLOCK):
        counts = np.zeros((min(_BLOCK, rule.resamples - start), len(y)), dtype=np.int64)
        for rows in strata:  # each class keeps its count: every resample can be scored
            counts[:, rows] = rng.multinomial(
                len(rows), np.full(len(rows), 1 / len(rows)), len(counts)
            )
        values.append(_resampled(rule.metric, y, y_index, proba, model, counts))
    tail = (1 - rule.confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(values), [tail, 100 - tail]) - test
    delta = value - test
    return Change(
        metric=metric_key(rule.metric, len(model.classes)),
        test=test,
        value=round(value, 6),
        change=round(delta, 6),
        low=round(float(low), 6),
        high=round(float(high), 6),
        worse_by=round(-delta if HIGHER_IS_BETTER[rule.metric] else delta, 6),
    )


_BLOCK = 25  # resamples drawn at once: a block's draw counts take 25 x rows integers


def _resampled(
    metric: Metric,
    y: npt.NDArray[Any],
    y_index: IntArray,
    proba: FloatArray,
    model: Model,
    counts: IntArray,
) -> FloatArray:
    """The metric of each resample (row i drawn counts[b, i] times)."""
    if metric == "roc_auc":
        if len(model.classes) == 2:
            k = model.classes.index(model.positive)
            return auc_resamples(y_index == k, proba[:, k], counts)
        per_class = [
            auc_resamples(y_index == k, proba[:, k], counts) for k in range(proba.shape[1])
        ]
        return np.mean(per_class, axis=0)
    rows = np.arange(len(y))
    picks = [np.repeat(rows, c) for c in counts]
    return np.array([score(metric, y[pick], proba[pick], model) for pick in picks])


def auc_resamples(
    positive: npt.NDArray[np.bool_], scores: FloatArray, counts: IntArray
) -> FloatArray:
    """ROC AUC of each resample, from one sort for all of them: the Mann-Whitney statistic, a tie
    counting half, which is the area `roc_auc_score` computes (the unit tests hold them equal).
    sklearn sorts again for every resample: 32 ms per resample of 40k rows against about 2 ms here."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    groups = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # runs of equal scores
    weights = counts[:, order].astype(np.float64)
    pos = np.add.reduceat(weights * positive[order], groups, axis=1)
    neg = np.add.reduceat(weights * ~positive[order], groups, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def seed_of(seed: int, version: str, window: int) -> list[int]:
    """The bootstrap's seed for one version and window: independent of the order they are judged."""
    return [seed, zlib.crc32(version.encode()), window & 0xFFFFFFFF, (window >> 32) & 0xFFFFFFFF]
