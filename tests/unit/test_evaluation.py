from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelops import evaluation
from modelops.evaluation import Decision, predict_labels
from modelops.schema import Target


def binary_case(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, n), 0.01, 0.99)
    return y, np.column_stack([1 - p, p])


def test_binary_metrics_score_the_positive_class_at_the_threshold() -> None:
    y, proba = binary_case()
    m = evaluation.classification_metrics(y, proba, [0, 1], 1, 0.5)
    assert set(m) == {
        "n_test",
        "roc_auc",
        "average_precision",
        "log_loss",
        "brier",
        "accuracy",
        "f1",
        "precision",
        "recall",
        "threshold",
        "positive_rate",
    }
    assert 0.8 < m["roc_auc"] < 1.0 and m["n_test"] == 2000
    flipped = evaluation.classification_metrics(y, proba, [0, 1], 1, 0.99)
    assert flipped["recall"] < m["recall"]


def test_choosing_the_other_positive_class_mirrors_auc() -> None:
    y, proba = binary_case()
    a = evaluation.classification_metrics(y, proba, [0, 1], 1, 0.5)["roc_auc"]
    b = evaluation.classification_metrics(y, proba, [0, 1], 0, 0.5)["roc_auc"]
    assert a == pytest.approx(b, abs=1e-6)


def test_multiclass_metrics_have_macro_and_weighted_variants() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(np.array(["low", "mid", "high"], dtype=object), 900)
    classes = ["high", "low", "mid"]
    logits = rng.normal(size=(900, 3)) + 2.0 * (y[:, None] == np.array(classes)[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = evaluation.classification_metrics(y, proba, classes, None, 0.5)
    for key in (
        "roc_auc_macro",
        "roc_auc_weighted",
        "f1_macro",
        "f1_weighted",
        "average_precision_macro",
        "log_loss",
        "brier",
    ):
        assert key in m
    curves = evaluation.curves(y, proba, classes, None, 5)
    assert set(curves["roc"]) == set(classes)
    pred = evaluation.predict_labels(proba, classes, None, 0.5)
    assert set(pred) <= set(classes)


def test_curves_are_thinned_and_keep_their_endpoints() -> None:
    y, proba = binary_case(20_000)
    roc = evaluation.curves(y, proba, [0, 1], 1, 10)["roc"]["1"]
    assert len(roc) <= evaluation.MAX_CURVE_POINTS
    assert roc[0]["fpr"] == 0.0 and roc[-1]["fpr"] == 1.0 and roc[-1]["tpr"] == 1.0


def test_confusion_rows_are_what_dvc_confusion_template_reads() -> None:
    rows = evaluation.confusion_rows(np.array([0, 1]), np.array([1, 1]))
    assert rows == [{"actual": "0", "predicted": "1"}, {"actual": "1", "predicted": "1"}]


@pytest.mark.parametrize("classes", [[0, 1], ["stay", "churn"]])
def test_the_servers_label_rule_is_the_evaluated_one(classes: list[Any]) -> None:
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(500), [0.5, 0.3, 0.7, 0.0, 1.0]])  # ties at the threshold
    proba = np.stack([1 - p, p], axis=1)
    target = Target("y", classes, positive=classes[1])
    decision = Decision.of(target, {"threshold": 0.5})
    want = predict_labels(proba, classes, classes[1], 0.5).tolist()
    assert decision.labels(proba, classes) == want
    assert Decision.of(target, {}).labels(proba, classes) == [
        classes[i] for i in np.argmax(proba, axis=1)
    ]


def multiclass_case(n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("case", ["binary", "multiclass"])
def test_every_metric_written_has_a_direction_or_is_not_a_score(case: str) -> None:
    y, proba = binary_case() if case == "binary" else multiclass_case()
    classes = [0, 1] if case == "binary" else [0, 1, 2]
    written = set(evaluation.classification_metrics(y, proba, classes, 1, 0.5))
    assert written <= set(evaluation.DIRECTIONS) | evaluation.NOT_SCORES
    assert not set(evaluation.DIRECTIONS) & evaluation.NOT_SCORES


@pytest.mark.parametrize("case", ["binary", "multiclass"])
def test_each_direction_prefers_the_informed_model_over_a_blind_one(case: str) -> None:
    y, proba = binary_case() if case == "binary" else multiclass_case()
    classes = [0, 1] if case == "binary" else [0, 1, 2]
    # Every row gets the class shares: ranks nothing, predicts one class.
    blind = np.tile(np.bincount(y, minlength=len(classes)) / len(y), (len(y), 1))
    informed = evaluation.classification_metrics(y, proba, classes, 1, 0.5)
    uninformed = evaluation.classification_metrics(y, blind, classes, 1, 0.5)
    for metric, direction in evaluation.DIRECTIONS.items():
        if metric in informed:
            better = informed[metric] > uninformed[metric]
            assert better if direction == "higher" else not better, metric


def test_every_score_has_a_counterpart_the_other_kind_of_target_writes() -> None:
    binary = set(evaluation.classification_metrics(*binary_case(), [0, 1], 1, 0.5))
    multi = set(evaluation.classification_metrics(*multiclass_case(), [0, 1, 2], 1, 0.5))
    for metric in evaluation.DIRECTIONS:
        assert evaluation.counterpart(metric, binary=True) in binary, metric
        assert evaluation.counterpart(metric, binary=False) in multi, metric
    assert evaluation.counterpart("roc_auc", binary=False) == "roc_auc_macro"
    assert evaluation.counterpart("roc_auc_macro", binary=True) == "roc_auc"
    assert evaluation.counterpart("log_loss", binary=False) == "log_loss"
