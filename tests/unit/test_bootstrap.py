"""The paired bootstrap's metric kernels equal scikit-learn's metrics (with sample_weight) and
evaluation's; the interval is seeded and paired; DeLong agrees with scikit-learn and with the
bootstrap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from modelops import bootstrap, evaluation
from modelops.errors import ParamsError

THRESHOLD = 0.4


def binary_rows(n: int = 1500, seed: int = 1, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    if ties:  # rounded, so that many rows tie: ties are where curve metrics go wrong
        p = np.round(np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2, n), 0.01, 0.99), 2)
    else:
        p = 1 / (1 + np.exp(-(y - 0.5 + rng.normal(0, 0.8, n))))
    return y, np.column_stack([1 - p, p])


def multiclass_rows(n: int = 1500, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array(["bronze", "gold", "silver"], dtype=object), n, p=[0.5, 0.3, 0.2])
    logits = rng.normal(0, 1, (n, 3)) + 1.5 * label_binarize(
        y, classes=["bronze", "gold", "silver"]
    )
    proba = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 3)
    return y, proba / proba.sum(axis=1, keepdims=True)


def sklearn_binary(metric: str, y: np.ndarray, proba: np.ndarray, w: np.ndarray) -> float:
    p, truth = proba[:, 1], y == 1
    pred = p >= THRESHOLD
    return float(
        {
            "roc_auc": lambda: roc_auc_score(truth, p, sample_weight=w),
            "average_precision": lambda: average_precision_score(truth, p, sample_weight=w),
            "log_loss": lambda: log_loss(y, proba, labels=[0, 1], sample_weight=w),
            "brier": lambda: brier_score_loss(truth, p, sample_weight=w),
            "accuracy": lambda: accuracy_score(truth, pred, sample_weight=w),
            "f1": lambda: f1_score(truth, pred, sample_weight=w),
            "precision": lambda: precision_score(truth, pred, sample_weight=w, zero_division=0.0),
            "recall": lambda: recall_score(truth, pred, sample_weight=w),
        }[metric]()
    )


def sklearn_multiclass(metric: str, y: np.ndarray, proba: np.ndarray, w: np.ndarray) -> float:
    classes = ["bronze", "gold", "silver"]
    onehot = label_binarize(y, classes=classes)
    pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    if metric in ("log_loss", "brier", "accuracy"):
        return float(
            {
                "log_loss": lambda: log_loss(y, proba, labels=classes, sample_weight=w),
                "brier": lambda: np.average(((proba - onehot) ** 2).sum(axis=1), weights=w),
                "accuracy": lambda: accuracy_score(y, pred, sample_weight=w),
            }[metric]()
        )
    base, average = metric.rsplit("_", 1)
    if base == "f1":
        return float(f1_score(y, pred, average=average, sample_weight=w))
    score = roc_auc_score if base == "roc_auc" else average_precision_score
    return float(score(onehot, proba, average=average, sample_weight=w))


BINARY = [
    "roc_auc",
    "average_precision",
    "log_loss",
    "brier",
    "accuracy",
    "f1",
    "precision",
    "recall",
]
MULTICLASS = [
    "roc_auc_macro",
    "roc_auc_weighted",
    "average_precision_macro",
    "average_precision_weighted",
    "log_loss",
    "brier",
    "accuracy",
    "f1_macro",
    "f1_weighted",
]


def kernel_values(metric: str, y: np.ndarray, proba: np.ndarray, w: np.ndarray) -> np.ndarray:
    classes: list[Any] = sorted(set(y.tolist()))
    return bootstrap.kernel(metric, y, proba, classes, 1, THRESHOLD)(w)


@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("metric", BINARY)
def test_binary_kernels_equal_scikit_learn_with_resample_counts_as_weights(
    metric: str, ties: bool
) -> None:
    y, proba = binary_rows(ties=ties)
    assert (len(np.unique(proba[:, 1])) < len(y)) == ties
    counts = bootstrap.resample_counts(np.random.default_rng(3), len(y), 4)
    got = kernel_values(metric, y, proba, counts)
    want = [sklearn_binary(metric, y, proba, w) for w in counts]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", MULTICLASS)
def test_multiclass_kernels_equal_scikit_learn_with_resample_counts_as_weights(
    metric: str,
) -> None:
    y, proba = multiclass_rows()
    counts = bootstrap.resample_counts(np.random.default_rng(4), len(y), 4)
    got = kernel_values(metric, y, proba, counts)
    want = [sklearn_multiclass(metric, y, proba, w) for w in counts]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["binary", "multiclass"])
def test_on_every_row_once_each_kernel_gives_what_evaluate_writes(case: str) -> None:
    y, proba = binary_rows() if case == "binary" else multiclass_rows()
    classes: list[Any] = sorted(set(y.tolist()))
    written = evaluation.classification_metrics(y, proba, classes, 1, THRESHOLD)
    for metric in BINARY if case == "binary" else MULTICLASS:
        got = bootstrap.kernel(metric, y, proba, classes, 1, THRESHOLD)(np.ones((1, len(y))))
        assert round(float(got[0]), 6) == written[metric], metric
    assert set(BINARY if case == "binary" else MULTICLASS) == {
        k for k in written if k in evaluation.DIRECTIONS
    }


def test_a_metric_evaluate_does_not_write_for_the_target_is_refused() -> None:
    y, proba = binary_rows()
    with pytest.raises(ParamsError, match=r"gate\.metric: 'roc_auc_macro' is not a metric"):
        bootstrap.kernel("roc_auc_macro", y, proba, [0, 1], 1, 0.5)


def paired(y: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int = 7) -> bootstrap.Interval:
    return bootstrap.paired_difference(
        "roc_auc", y, a, b, [0, 1], 1, 0.5, resamples=1000, confidence=0.95, seed=seed
    )


def test_the_paired_interval_is_seeded_and_brackets_the_difference() -> None:
    y, better = binary_rows(3000)
    rng = np.random.default_rng(9)
    p = np.clip(better[:, 1] + rng.normal(0, 0.15, len(y)), 0, 1)  # the same model, blurred
    worse = np.column_stack([1 - p, p])
    got = paired(y, better, worse)
    assert got == paired(y, better, worse)
    assert got != paired(y, better, worse, seed=8)
    want = roc_auc_score(y, better[:, 1]) - roc_auc_score(y, worse[:, 1])
    assert got.delta == pytest.approx(want, abs=1e-12)
    assert 0 < got.low < got.delta < got.high and got.undefined == 0
    # Paired: one model against itself differs by exactly nothing on every resample.
    assert paired(y, better, better)[:3] == (0.0, 0.0, 0.0)


def test_delong_agrees_with_scikit_learn_and_with_the_bootstrap() -> None:
    y, a = binary_rows(4000, seed=11)
    rng = np.random.default_rng(12)
    p = np.clip(a[:, 1] + rng.normal(0, 0.1, len(y)), 0, 1)
    truth = y == 1
    test = bootstrap.delong(truth, a[:, 1], p)
    assert test.auc_candidate == pytest.approx(roc_auc_score(truth, a[:, 1]), abs=1e-12)
    assert test.auc_champion == pytest.approx(roc_auc_score(truth, p), abs=1e-12)
    # The bootstrap's spread of the difference and DeLong's standard error agree.
    interval = paired(y, a, np.column_stack([1 - p, p]))
    se_bootstrap = (interval.high - interval.low) / (2 * 1.959964)
    se_delong = (test.auc_candidate - test.auc_champion) / test.z
    assert se_delong == pytest.approx(se_bootstrap, rel=0.15)
    assert 0 <= test.p_value < 0.05
    same = bootstrap.delong(truth, a[:, 1], a[:, 1])
    assert (same.z, same.p_value) == (0.0, 1.0)


def test_the_bootstrap_of_the_bundled_test_split_size_is_fast() -> None:
    # The gate's budget is 10% of a cold `dvc repro` (bench/repro.py measures both); here only a
    # generous bound that catches a kernel falling back to one scikit-learn call per resample.
    import time

    y, a = binary_rows(6000, seed=13)
    b = np.column_stack([a[::-1, 0], a[::-1, 1]])
    start = time.perf_counter()
    paired(y, a, b)
    assert time.perf_counter() - start < 5.0
