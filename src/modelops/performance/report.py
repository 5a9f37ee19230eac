"""Joined predictions, test metrics per version and the rule in; the performance report (per
version and window: metrics, label coverage, change against test, status), its text table and
its chart rows out.

A version's status is that of its latest window that could be judged (ok or degraded): the most
recent windows usually wait for their labels, so "now" is the latest window with enough of them.
A version with no judged window is insufficient_data. The report's status is the worst version's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from modelops.performance import judge
from modelops.performance.baseline import Baseline
from modelops.performance.join import Joined, Unjoined, window_ns, window_start
from modelops.performance.judge import Change, Model, Rule
from modelops.performance.log import Predictions
from modelops.performance.outcomes import Outcomes
from modelops.performance.status import Status, worst


class WindowPerformance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One version's predictions made in one window, judged by the outcomes known for them."""

    start: str
    end: str
    predictions: int
    labels: int
    coverage: float  # labels / predictions: the share of predictions with an outcome
    status: Status
    reason: str
    metrics: dict[str, Any] | None  # what `evaluate` writes, on the labelled predictions
    change: Change | None  # the judged metric against the version's test metrics


class VersionPerformance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: Status
    baseline: Baseline  # where the test metrics came from, and the metrics
    predictions: int
    labels: int
    coverage: float
    windows: list[WindowPerformance]


class OutcomeAccount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every outcome read, and where it went: joined, or one of the kinds not joined."""

    rows: int
    files: int
    replaced: int  # replaced by a later outcome for the same id
    joined: int
    unknown_id: Unjoined
    label_outside_classes: Unjoined
    before_prediction: Unjoined


class PerformanceReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: Status
    model: str
    classes: list[str | int]
    rule: Rule
    window: str
    predictions: int
    predictions_without_id: int
    files: int
    outcomes: OutcomeAccount
    versions: dict[str, VersionPerformance]

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    def summary(self) -> PerformanceSummary:
        labels = sum(v.labels for v in self.versions.values())
        return PerformanceSummary(
            status=self.status,
            versions=len(self.versions),
            degraded=sum(v.status == "degraded" for v in self.versions.values()),
            predictions=self.predictions,
            labels=labels,
            coverage=round(labels / self.predictions, 6) if self.predictions else None,
        )


class PerformanceSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """metrics/performance_summary.json: the few numbers DVC shows as metrics (the per-version,
    per-window report would make `dvc metrics show` and `dvc exp show` unreadable)."""

    status: Status
    versions: int  # served versions seen in the log
    degraded: int  # of them, judged degraded in their latest window
    predictions: int
    labels: int
    coverage: float | None


def build(
    model_name: str,
    predictions: Predictions,
    outcomes: Outcomes,
    joined: Joined,
    models: Mapping[str, Model],
    baselines: Mapping[str, Baseline],
    rule: Rule,
    window: str,
    width_ns: int,
    seed: int,
) -> PerformanceReport:
    """The report of every version and window the log holds."""
    versions = {}
    for v, name in enumerate(predictions.versions):
        versions[name] = _version(
            name,
            predictions,
            joined,
            predictions.version == v,
            models[name],
            baselines[name],
            rule,
            width_ns,
            seed,
        )
    any_model = next(iter(models.values()), None)
    return PerformanceReport(
        status=worst([p.status for p in versions.values()]),
        model=model_name,
        classes=list(any_model.classes) if any_model else [],
        rule=rule,
        window=window,
        predictions=predictions.rows,
        predictions_without_id=int(np.sum(predictions.ids == None)),  # noqa: E711 - elementwise
        files=predictions.files,
        outcomes=OutcomeAccount(
            rows=outcomes.rows,
            files=outcomes.files,
            replaced=outcomes.replaced,
            joined=joined.joined,
            unknown_id=joined.unknown_id,
            label_outside_classes=joined.label_outside_classes,
            before_prediction=joined.before_prediction,
        ),
        versions=versions,
    )


def _version(
    name: str,
    predictions: Predictions,
    joined: Joined,
    mine: np.ndarray,
    model: Model,
    baseline: Baseline,
    rule: Rule,
    width_ns: int,
    seed: int,
) -> VersionPerformance:
    key = judge.metric_key(rule.metric, len(model.classes))
    test = (baseline.metrics or {}).get(key)
    windows = []
    for w in np.unique(joined.window[mine]).tolist():
        rows = mine & (joined.window == w)
        labelled = np.flatnonzero(rows & (joined.label >= 0))
        y_index, proba = joined.label[labelled], predictions.proba[labelled]
        metrics = (
            judge.window_metrics(model.labels(y_index), proba, model) if len(labelled) else None
        )
        change = None
        if (
            metrics is not None
            and isinstance(test, int | float)
            and len(labelled) >= rule.min_labels
        ):
            change = judge.change(
                y_index, proba, model, rule, float(test), judge.seed_of(seed, name, w)
            )
        status, reason = judge.status(len(labelled), rule, metrics is not None, change)
        n = int(rows.sum())
        windows.append(
            WindowPerformance(
                start=window_start(w, width_ns),
                end=window_start(w + 1, width_ns),
                predictions=n,
                labels=len(labelled),
                coverage=round(len(labelled) / n, 6),
                status=status,
                reason=reason,
                metrics=metrics,
                change=change,
            )
        )
    judged = [w.status for w in windows if w.status != "insufficient_data"]
    n, labels = int(mine.sum()), int(np.sum(mine & (joined.label >= 0)))
    return VersionPerformance(
        status=judged[-1] if judged else "insufficient_data",
        baseline=baseline,
        predictions=n,
        labels=labels,
        coverage=round(labels / n, 6) if n else 0.0,
        windows=windows,
    )


def plot_rows(report: PerformanceReport, version: str) -> list[dict[str, Any]]:
    """Long-form rows {window, series, value} of one version over time: the judged metric in
    production and on test, and the label coverage."""
    key = judge.metric_key(report.rule.metric, len(report.classes))
    rows: list[dict[str, Any]] = []
    for w in report.versions[version].windows:
        if w.metrics is not None and key in w.metrics:
            rows.append(
                {"window": w.start, "series": f"{key} (production)", "value": w.metrics[key]}
            )
        test = (report.versions[version].baseline.metrics or {}).get(key)
        if test is not None:
            rows.append({"window": w.start, "series": f"{key} (test)", "value": test})
        rows.append({"window": w.start, "series": "label coverage", "value": w.coverage})
    return rows


def format_report(report: PerformanceReport) -> str:
    """The report as a fixed-width table a person reads in a terminal or a cron mail."""
    r = report.rule
    key = judge.metric_key(r.metric, len(report.classes))
    lines = [
        f"performance check: {report.predictions} predictions of {report.model} in "
        f"{report.files} file(s), windows of {report.window}",
        f"degraded: {key} worse than on test by more than {r.max_drop:g}, and the "
        f"{r.confidence:.0%} interval",
        f"          of the change excludes 0; a window under {r.min_labels} labels is not judged",
    ]
    for name, v in report.versions.items():
        lines += [
            "",
            f"version {name}: {v.status} (test metrics: {v.baseline.source}"
            + (f"; {v.baseline.note}" if v.baseline.note else "")
            + ")",
            f"  {'window':<16} {'predictions':>11} {'labels':>6} {'coverage':>8} {key:>9} "
            f"{'change':>7} {'interval':>16}  status",
        ]
        for w in v.windows:
            value = "-" if w.metrics is None else f"{w.metrics.get(key, float('nan')):.4f}"
            c = w.change
            delta = "-" if c is None else f"{c.change:+.4f}"
            interval = "-" if c is None else f"{c.low:+.4f}..{c.high:+.4f}"
            when = _window_start(w.start, report.window)
            lines.append(
                f"  {when:<16} {w.predictions:>11} {w.labels:>6} {w.coverage:>8.1%} "
                f"{value:>9} {delta:>7} {interval:>16}  {w.status}"
            )
    o = report.outcomes
    lines += [
        "",
        f"outcomes: {o.rows} read from {o.files} file(s), {o.joined} joined",
        *_unjoined(o),
    ]
    if report.predictions_without_id:
        lines.append(f"predictions without an id (never joined): {report.predictions_without_id}")
    lines += ["", f"overall: {report.status}"]
    return "\n".join(lines)


def _window_start(start: str, window: str) -> str:
    """A window's start as the table shows it: windows of whole days start at midnight UTC (see
    `join.window_start`), so their date says it; other windows need the hour."""
    whole_days = window_ns(window) % window_ns("1d") == 0
    return start[:10] if whole_days else start[:16].replace("T", " ")


def _unjoined(o: OutcomeAccount) -> list[str]:
    kinds = [
        ("unknown id", o.unknown_id),
        ("label outside the model's classes", o.label_outside_classes),
        ("observed before any prediction of the id", o.before_prediction),
    ]
    lines = [
        f"  not joined, {what}: {u.count} (e.g. {', '.join(map(repr, u.examples))})"
        for what, u in kinds
        if u.count
    ]
    if o.replaced:
        lines.append(f"  replaced by a later outcome for the same id: {o.replaced}")
    return lines
