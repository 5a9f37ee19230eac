"""Labels + predicted probabilities in; metrics, curve data and feature importance out (no I/O).

Binary targets are scored on the positive class at a threshold; multiclass targets on the argmax,
with macro and weighted averages and one-vs-rest curves per class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import label_binarize

from modelops.schema import Target, scored_classes

MAX_CURVE_POINTS = 200
_DIGITS = 6

Direction = Literal["higher", "lower"]
# Which way is better for each metric `classification_metrics` writes: the table the champion gate
# reads for `gate.metric`. The other keys (NOT_SCORES) describe the rows or the decision rule.
DIRECTIONS: dict[str, Direction] = {
    "roc_auc": "higher",
    "roc_auc_macro": "higher",
    "roc_auc_weighted": "higher",
    "average_precision": "higher",
    "average_precision_macro": "higher",
    "average_precision_weighted": "higher",
    "log_loss": "lower",
    "brier": "lower",
    "accuracy": "higher",
    "f1": "higher",
    "f1_macro": "higher",
    "f1_weighted": "higher",
    "precision": "higher",
    "recall": "higher",
}
NOT_SCORES = frozenset({"n_test", "threshold", "positive_rate"})
# A binary target's score and its counterpart for more classes: the same question, averaged over
# the classes one-vs-rest. What `modelops use-data` sets gate.metric to when the target changes kind.
_COUNTERPARTS = {
    "roc_auc": "roc_auc_macro",
    "average_precision": "average_precision_macro",
    "f1": "f1_macro",
    "precision": "f1_macro",
    "recall": "f1_macro",
}


def counterpart(metric: str, binary: bool) -> str:
    """The metric asking `metric`'s question of a binary (or a multiclass) target."""
    if binary:
        back = {
            v: k for k, v in _COUNTERPARTS.items() if k in ("roc_auc", "average_precision", "f1")
        }
        return back.get(metric.replace("_weighted", "_macro"), metric)
    return _COUNTERPARTS.get(metric, metric)


def predict_labels(
    proba: npt.NDArray[np.float64], classes: Sequence[Any], positive: Any, threshold: float
) -> npt.NDArray[Any]:
    classes_arr = np.asarray(classes)
    if classes_arr.dtype.kind == "U":
        classes_arr = classes_arr.astype(object)
    if len(classes) == 2:
        pos = list(classes).index(positive)
        neg = 1 - pos
        return np.where(proba[:, pos] >= threshold, classes_arr[pos], classes_arr[neg])
    return classes_arr[np.argmax(proba, axis=1)]


class Decision(msgspec.Struct, frozen=True):
    """How probabilities become the label: the evaluated threshold on the positive class (binary
    targets whose metrics record a threshold), or the argmax."""

    rule: Literal["threshold", "argmax"]
    positive: str | int | None = None
    threshold: float | None = None

    @classmethod
    def of(cls, target: Target, metrics: Mapping[str, Any]) -> Decision:
        """The rule the model was evaluated with, from its target and its metrics.json."""
        threshold = metrics.get("threshold")
        if (
            target.is_binary
            and isinstance(threshold, int | float)
            and not isinstance(threshold, bool)
        ):
            return cls("threshold", positive=target.positive, threshold=float(threshold))
        return cls("argmax")

    def labels(self, proba: npt.NDArray[np.float64], classes: Sequence[Any]) -> list[Any]:
        """The label of each row of `proba` (columns in `classes` order) by this rule: the same
        comparison as `predict_labels`, on Python floats (a server asks for a row or a few)."""
        if self.rule == "threshold" and self.threshold is not None and len(classes) == 2:
            pos = list(classes).index(self.positive)
            yes, no, t = classes[pos], classes[1 - pos], self.threshold
            return [yes if p >= t else no for p in proba[:, pos].tolist()]
        return [classes[i] for i in np.argmax(proba, axis=1).tolist()]


def classification_metrics(
    y: npt.NDArray[Any],
    proba: npt.NDArray[np.float64],
    classes: Sequence[Any],
    positive: Any,
    threshold: float,
) -> dict[str, Any]:
    """Scalar metrics for metrics.json; keys are stable so `dvc metrics diff` lines up across runs."""
    labels = list(classes)
    pred = predict_labels(proba, classes, positive, threshold)
    out: dict[str, Any] = {"n_test": len(y)}
    if len(labels) == 2:
        pos = labels.index(positive)
        p = proba[:, pos]
        is_pos = y == positive
        out.update(
            roc_auc=roc_auc_score(is_pos, p),
            average_precision=average_precision_score(is_pos, p),
            log_loss=log_loss(y, proba, labels=labels),
            brier=brier_score_loss(is_pos, p),
            accuracy=accuracy_score(y, pred),
            f1=f1_score(is_pos, pred == positive),
            precision=precision_score(is_pos, pred == positive, zero_division=0.0),
            recall=recall_score(is_pos, pred == positive),
            threshold=threshold,
            positive_rate=float(is_pos.mean()),
        )
    else:
        onehot = label_binarize(y, classes=labels)
        out.update(
            roc_auc_macro=roc_auc_score(onehot, proba, average="macro"),
            roc_auc_weighted=roc_auc_score(onehot, proba, average="weighted"),
            average_precision_macro=average_precision_score(onehot, proba, average="macro"),
            average_precision_weighted=average_precision_score(onehot, proba, average="weighted"),
            log_loss=log_loss(y, proba, labels=labels),
            brier=float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
            accuracy=accuracy_score(y, pred),
            f1_macro=f1_score(y, pred, average="macro"),
            f1_weighted=f1_score(y, pred, average="weighted"),
        )
    return {
        k: (round(float(v), _DIGITS) if isinstance(v, float | np.floating) else v)
        for k, v in out.items()
    }


def _thin(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    if len(rows) <= MAX_CURVE_POINTS:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, MAX_CURVE_POINTS).round().astype(int))
    return [rows[i] for i in keep]


def _r(v: float) -> float:
    return round(float(v), _DIGITS)


def curves(
    y: npt.NDArray[Any],
    proba: npt.NDArray[np.float64],
    classes: Sequence[Any],
    positive: Any,
    calibration_bins: int,
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """ROC, precision-recall and calibration points, one series per scored class (the positive
    class for binary targets, every class one-vs-rest for multiclass)."""
    scored = scored_classes(classes, positive)
    out: dict[str, dict[str, list[dict[str, float]]]] = {
        "roc": {},
        "precision_recall": {},
        "calibration": {},
    }
    for cls in scored:
        is_cls = (y == cls).astype(int)
        p = proba[:, list(classes).index(cls)]
        fpr, tpr, thr = roc_curve(is_cls, p)
        out["roc"][str(cls)] = _thin(
            [
                {"fpr": _r(a), "tpr": _r(b), "threshold": _r(min(t, 1.0))}
                for a, b, t in zip(fpr, tpr, thr, strict=True)
            ]
        )
        prec, rec, thr = precision_recall_curve(is_cls, p)
        out["precision_recall"][str(cls)] = _thin(
            [
                {"recall": _r(r), "precision": _r(q), "threshold": _r(t)}
                for q, r, t in zip(prec[:-1], rec[:-1], thr, strict=True)
            ]
        )
        frac, mean_pred = calibration_curve(is_cls, p, n_bins=calibration_bins, strategy="quantile")
        out["calibration"][str(cls)] = [
            {"mean_predicted": _r(m), "fraction_positive": _r(f)}
            for m, f in zip(mean_pred, frac, strict=True)
        ]
    return out


def confusion_rows(y: npt.NDArray[Any], pred: npt.NDArray[Any]) -> list[dict[str, str]]:
    """One {actual, predicted} row per test row: the input DVC's confusion template expects."""
    return [{"actual": str(a), "predicted": str(p)} for a, p in zip(y, pred, strict=True)]


def feature_importance(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    y: npt.NDArray[Any],
    binary: bool,
    repeats: int,
    max_rows: int,
    seed: int,
) -> list[dict[str, float | str]]:
    """Permutation importance of each raw feature on held-out rows, largest first.

    Scored with ROC AUC for binary targets and negative log loss for multiclass, so a value is the
    drop in that score when the feature's values are shuffled.
    """
    if len(frame) > max_rows:
        idx = np.random.default_rng(seed).choice(len(frame), max_rows, replace=False)
        idx.sort()
        frame, y = frame.iloc[idx], y[idx]
    result = permutation_importance(
        pipeline,
        frame,
        y,
        scoring="roc_auc" if binary else "neg_log_loss",
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    rows: list[dict[str, float | str]] = [
        {"feature": str(name), "importance": _r(m), "std": _r(s)}
        for name, m, s in zip(
            frame.columns, result.importances_mean, result.importances_std, strict=True
        )
    ]
    return sorted(rows, key=lambda r: -float(r["importance"]))
