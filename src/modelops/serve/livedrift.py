"""Answered rows in (from the dispatcher thread, off the request path); the drift of the last N rows
out, as Prometheus gauges at scrape time and as the `GET /v1/drift` snapshot.

Answered batches are only queued when they arrive (a list append per request); they reach the
window in one vectorised update once a second (the dispatcher ticks after every batch, the flush
waits for FLUSH_SECONDS), before every snapshot, and whenever a window's worth is queued. Binning
each request's rows as it came cost the server 17% of its single-row throughput on two cores
(bench/serve.py); a batch costs about 1-2 microseconds a row.

The window itself is `modelops.drift.LiveWindow` (the same bins and rule as the drift stage); this
module only feeds it and exports what it says. Until the window holds `min_rows` rows it says
`insufficient_data` and no PSI or p-value series are exported, so nothing can alarm on noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelops.drift import SEVERITY, DriftReport, LiveWindow, Profile, Thresholds
from modelops.errors import SchemaError
from modelops.serve.predlog import Answered

FLUSH_SECONDS = 1.0
DEFAULT_WINDOW = 5000  # for a profile written before it recorded params.yaml's drift.window


class LiveDrift:
    """A dispatcher observer and a Prometheus collector around one LiveWindow."""

    def __init__(
        self,
        profile: Profile,
        features: Sequence[str],
        classes: Sequence[Any],
        window: int,
        thresholds: Thresholds,
    ) -> None:
        self.window = LiveWindow(profile, window=window, thresholds=thresholds)
        self._features = list(features)
        self._scored = [(i, str(c)) for i, c in enumerate(classes) if str(c) in profile.predictions]
        # Only the rows and probabilities are kept until the flush: holding whole answered batches
        # (request Structs and all) for a second kept thousands of objects alive for the collector.
        self._rows: list[tuple[Any, ...]] = []
        self._proba: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._flushed_at = 0.0
        # CPU seconds (this thread's, not wall time) spent queueing and binning rows: what live
        # drift costs the process, whatever else competes for the cores meanwhile.
        self._busy = 0.0

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        features: Sequence[str],
        classes: Sequence[Any],
        window: int | None,
        min_rows: int | None,
    ) -> LiveDrift:
        """The window and drift rule the profile recorded from params.yaml, unless overridden."""
        live = profile.live
        size = window or (live.window if live is not None else DEFAULT_WINDOW)
        thresholds = live.thresholds if live is not None else Thresholds()
        if min_rows is not None:
            thresholds = msgspec.structs.replace(thresholds, min_rows=min_rows)
        if thresholds.min_rows > size:
            raise SchemaError(
                f"live drift needs {thresholds.min_rows} rows before it reports, more than the "
                f"window of {size}; set --drift-window or --drift-min-rows"
            )
        return cls(profile, features, classes, size, thresholds)

    # --- observer (dispatcher thread)

    def observe(self, answered: Answered) -> None:
        started = time.thread_time()
        with self._lock:
            self._rows.extend(answered.rows)
            self._proba.append(answered.proba)
            full = len(self._rows) >= self.window.window
            self._busy += time.thread_time() - started
        if full:
            self.flush()

    def tick(self, now: float) -> None:
        if now - self._flushed_at >= FLUSH_SECONDS:
            self._flushed_at = now
            self.flush()

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Move every queued row into the window, in one update."""
        with self._lock:
            rows, self._rows = self._rows, []
            probas, self._proba = self._proba, []
        if not rows:
            return
        started = time.thread_time()
        columns = dict(zip(self._features, zip(*rows, strict=True), strict=True))
        proba = np.concatenate(probas)
        self.window.observe_columns(columns, {c: proba[:, i] for i, c in self._scored}, len(rows))
        with self._lock:
            self._busy += time.thread_time() - started

    # --- snapshot (scrape and GET /v1/drift)

    def snapshot(self) -> DriftReport:
        self.flush()
        return self.window.snapshot()

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self.snapshot()))

    def _families(self, report: DriftReport | None) -> list[Metric]:
        rows = GaugeMetricFamily(
            "modelops_drift_window_rows", "Answered rows in the live drift window"
        )
        capacity = GaugeMetricFamily(
            "modelops_drift_window_capacity", "Rows the live drift window holds when full"
        )
        busy = CounterMetricFamily(
            "modelops_drift_update_seconds",
            "CPU seconds spent queueing answered rows and binning them into the live drift window",
        )
        with self._lock:
            busy.add_metric([], self._busy)
        psi = GaugeMetricFamily(
            "modelops_feature_psi",
            "PSI of each feature over the live window against the training profile",
            labels=["feature"],
        )
        p_value = GaugeMetricFamily(
            "modelops_feature_drift_pvalue",
            "Chi-square p-value of each feature's PSI over the live window",
            labels=["feature"],
        )
        severity = GaugeMetricFamily(
            "modelops_feature_drift_severity",
            "Drift status per feature: 0 stable, 1 insufficient data, 2 moderate, 3 significant",
            labels=["feature"],
        )
        prediction_psi = GaugeMetricFamily(
            "modelops_prediction_psi",
            "PSI of the predicted probability of each scored class over the live window",
            labels=["class"],
        )
        prediction_severity = GaugeMetricFamily(
            "modelops_prediction_drift_severity",
            "Drift status per scored class: 0 stable, 1 insufficient data, 2 moderate, 3 significant",
            labels=["class"],
        )
        capacity.add_metric([], self.window.window)
        if report is not None:
            rows.add_metric([], report.rows)
            for name, d in report.features.items():
                severity.add_metric([name], SEVERITY[d.status])
                if d.psi is not None and d.p_value is not None:
                    psi.add_metric([name], d.psi)
                    p_value.add_metric([name], d.p_value)
            for cls, d in report.predictions.items():
                prediction_severity.add_metric([cls], SEVERITY[d.status])
                if d.psi is not None:
                    prediction_psi.add_metric([cls], d.psi)
        return [rows, capacity, busy, psi, p_value, severity, prediction_psi, prediction_severity]
