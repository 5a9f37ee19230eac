"""What the README's first command ends with, on a reproduced repository: `modelops summary`, a
screen a person reads (key metrics and the drift verdict within 100 columns), and DVC's metrics
holding the drift summary, not the per-feature report."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from modelops import files, paths
from modelops.drift.report import DriftSummary
from tests.conftest import REPRO_OUTPUT, SMALL_ROWS, run


def test_the_summary_fits_in_100_columns_with_the_metrics_and_the_drift_verdict(
    reproduced_repo: Path,
) -> None:
    lines = run("modelops", "summary", cwd=reproduced_repo).stdout.splitlines()
    assert max(map(len, lines)) <= 100
    train_rows = int(SMALL_ROWS * 0.8)
    assert lines[0] == (
        f"churn: hist_gradient_boosting, 10 features, {train_rows} training rows of "
        "data/raw/customers.parquet"
    )
    metrics = files.read_json(reproduced_repo / paths.METRICS)
    shown = " ".join(lines)
    for key in ("roc_auc", "average_precision", "log_loss", "accuracy", "f1"):
        assert f"{key} " in shown and f"{metrics[key]:.4f}" in shown
    drift = msgspec.json.decode(
        (reproduced_repo / paths.DRIFT_SUMMARY).read_bytes(), type=DriftSummary
    )
    assert drift.verdict() in lines and drift.verdict().startswith("drift: stable, 0 flagged")
    assert "gate: no_champion (no version held prod)" in lines  # nothing registered yet
    assert any(line.startswith("performance: ") for line in lines)


def test_every_line_dvc_repro_prints_fits_in_100_columns(reproduced_repo: Path) -> None:
    lines = (reproduced_repo.parent / REPRO_OUTPUT).read_text().splitlines()
    assert any(line.startswith("simulate: ") for line in lines)  # the stages' own lines are here
    wide = [line for line in lines if len(line) > 100]
    assert not wide, wide


def test_dvc_metrics_hold_the_drift_summary_and_not_the_per_feature_report(
    reproduced_repo: Path,
) -> None:
    shown = json.loads(run("dvc", "metrics", "show", "--json", cwd=reproduced_repo).stdout)
    data = shown[""]["data"] if "" in shown else next(iter(shown.values()))["data"]
    assert set(data) == {
        str(paths.METRICS),
        str(paths.DRIFT_SUMMARY),
        str(paths.GATE),
        str(paths.PERFORMANCE_SUMMARY),
    }
    summary = data[str(paths.DRIFT_SUMMARY)]["data"]
    assert set(summary) == {"status", "severity", "rows", "flagged", "worst_psi", "worst"}
