"""Answered rows in (a list append on the request path); the drift of the last N rows out, as
Prometheus gauges at scrape time and as the `GET /v1/drift` snapshot.

Answered batches are only queued when they arrive; they reach the window in one vectorised update
once a second, on the live-drift thread, and before every snapshot. Binning each request's rows as
it came cost the server 17% of its single-row throughput on two cores (bench/serve.py); a batch
costs about 1-2 microseconds a row.

`LiveWindow` is the window itself: the drift stage's bins (`modelops.drift.bins`) and report
(`modelops.drift.report.compare`) over the last N rows. `LiveDrift` feeds it and exports what it
says. Until the window holds `min_rows` rows it says `insufficient_data` and
no PSI or p-value series are exported, so nothing can alarm on noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelops.drift.bins import category_bins, encode, numeric_bins
from modelops.drift.profile import CategoricalProfile, FeatureProfile, NumericProfile, Profile
from modelops.drift.report import DriftReport, compare
from modelops.drift.status import SEVERITY, SEVERITY_LEGEND, Thresholds
from modelops.errors import SchemaError
from modelops.params import window_can_report
from modelops.serve.predlog import Answered
from modelops.types import FloatArray, IntArray, Row

if TYPE_CHECKING:
    from modelops.serve.workers import SharedCounts

FLUSH_SECONDS = 1.0
DEFAULT_WINDOW = 5000  # for a profile written before it recorded params.yaml's drift.window


class LiveWindow:
    """Drift of the last `window` answered rows, updated as rows are answered.

    `observe_columns` bins a batch of rows with a few vectorised operations per feature and keeps a
    ring buffer of bin numbers, so evicting the oldest rows is a decrement, never a recount; the
    cost per row is about a microsecond, so a server can feed it whole batches. `snapshot()`
    returns a `DriftReport` over the rows in the window (PSI, p-value and status per feature and
    per scored class); while a part has fewer than `min_rows` rows it is `insufficient_data` with
    no numbers. Thread-safe: updates and snapshots hold one lock while they touch the counts
    (binning happens before it).

        window = LiveWindow(Profile.decode(path.read_bytes()), window=5000, min_rows=500)
        window.observe_columns({"age": [41.0, None], ...}, {"1": np.array([0.2, 0.7])})
        snap = window.snapshot()      # snap.rows, snap.status, snap.features["age"].psi, …
    """

    def __init__(
        self,
        profile: Profile,
        window: int = 5000,
        min_rows: int | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 row, got {window}")
        thresholds = thresholds or Thresholds()
        if min_rows is not None:
            thresholds = msgspec.structs.replace(thresholds, min_rows=min_rows)
        if not window_can_report(window, thresholds.min_rows):
            raise ValueError(f"min_rows {thresholds.min_rows} exceeds the window of {window} rows")
        self.profile = profile
        self.window = window
        self.thresholds = thresholds
        self._names = list(profile.features)
        self._classes = list(profile.predictions)
        self._parts: list[tuple[str, FeatureProfile]] = [
            *profile.features.items(),
            *profile.predictions.items(),
        ]
        self._edges = [
            np.asarray(p.edges, np.float64) if isinstance(p, NumericProfile) else None
            for _, p in self._parts
        ]
        self._sizes = [len(p.labels()) for _, p in self._parts]
        # One flat count vector: part j owns [offset_j, offset_j + size_j); the extra last slot
        # absorbs prediction bins of rows that came without probabilities, and empty ring slots
        # point at it too, so overwriting any slot may decrement what it held unconditionally.
        self._offsets = np.cumsum([0, *self._sizes])[:-1].astype(np.int64)
        self._skip = int(sum(self._sizes))
        self._counts = np.zeros(self._skip + 1, dtype=np.int64)
        self._ring = np.full((window, len(self._parts)), self._skip, dtype=np.int64)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows currently in the window."""
        return self._filled

    def observe_columns(
        self,
        features: Mapping[str, Sequence[Any] | npt.NDArray[Any]],
        probabilities: Mapping[str, FloatArray] | None = None,
        n_rows: int | None = None,
    ) -> None:
        """Add `n_rows` answered rows given column-wise: feature -> values (None or NaN for
        missing; a feature not given is missing in every row) and scored class -> probabilities
        (NaN, or a class not given, leaves that row out of prediction drift)."""
        n = n_rows if n_rows is not None else len(next(iter(features.values()), ()))
        if n == 0:
            return
        keep = min(n, self.window)  # older rows would be evicted by this very call
        bins = np.empty((keep, len(self._parts)), dtype=np.int64)
        for j, (name, _) in enumerate(self._parts):
            is_prediction = j >= len(self._names)
            values = ((probabilities or {}) if is_prediction else features).get(name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name!r}: {len(values)} values for {n} rows")
            part = self._part_bins(j, values[n - keep :] if values is not None else None, keep)
            last = self._sizes[j] - 1  # the missing bin
            if is_prediction:  # a row without a probability is in no prediction bin at all
                bins[:, j] = np.where(part == last, self._skip, part + self._offsets[j])
            else:
                bins[:, j] = part + self._offsets[j]
        with self._lock:
            slots = (self._next + np.arange(keep)) % self.window
            evicted = self._ring[slots]
            size = self._counts.size
            self._counts -= np.bincount(evicted.ravel(), minlength=size)
            self._counts += np.bincount(bins.ravel(), minlength=size)
            self._ring[slots] = bins
            self._next = int((self._next + keep) % self.window)
            self._filled = min(self.window, self._filled + keep)

    def _part_bins(
        self, j: int, values: Sequence[Any] | npt.NDArray[Any] | None, n: int
    ) -> IntArray:
        """Each value's bin within part j; every row in the missing bin when `values` is None."""
        name, p = self._parts[j]
        edges = self._edges[j]
        if values is None:
            return np.full(n, self._sizes[j] - 1, dtype=np.int64)
        if edges is not None:
            return numeric_bins(_numbers(name, values), edges)
        assert isinstance(p, CategoricalProfile)
        return category_bins(*encode(values), p.categories)

    def snapshot(self) -> DriftReport:
        """The drift report of the rows now in the window."""
        return self.report(*self.counts())

    def counts(self) -> tuple[IntArray, int]:
        """The window's bin counts (one flat vector over every part) and its rows; counts of
        windows over the same profile add."""
        with self._lock:
            return self._counts.copy(), self._filled

    def report(self, counts: IntArray, rows: int) -> DriftReport:
        """The drift report of flat bin counts as `counts` gives them."""
        split = [
            counts[o : o + s] for o, s in zip(self._offsets.tolist(), self._sizes, strict=True)
        ]
        k = len(self._names)
        return compare(
            self.profile,
            dict(zip(self._names, split[:k], strict=True)),
            dict(zip(self._classes, split[k:], strict=True)),
            self.thresholds,
            rows,
        )


def _numbers(name: str, values: Sequence[Any] | npt.NDArray[Any]) -> FloatArray:
    """Numeric feature values as float64, None as NaN; a value that is no number is an error."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        for v in values:
            try:
                float(v if v is not None else "nan")
            except (TypeError, ValueError):
                raise ValueError(f"{name!r}: {v!r} is not a number") from None
        raise


class LiveDrift:
    """Fed answered batches on the request path (a list append), binned into one `LiveWindow` by
    its own thread, exported as a Prometheus collector."""

    def __init__(
        self,
        profile: Profile,
        features: Sequence[str],
        classes: Sequence[Any],
        window: int,
        thresholds: Thresholds,
        shared: SharedCounts | None = None,
    ) -> None:
        self.window = LiveWindow(profile, window=window, thresholds=thresholds)
        self.shared = shared  # with several workers: every worker's window, added
        self._features = list(features)
        self._scored = [(i, str(c)) for i, c in enumerate(classes) if str(c) in profile.predictions]
        # Only the rows and probabilities are kept until the flush: holding whole answered batches
        # (request Structs and all) for a second kept thousands of objects alive for the collector.
        self._rows: list[Row] = []
        self._proba: list[FloatArray] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None
        # CPU seconds (the binning thread's, not wall time) spent binning rows: what live drift
        # costs the process, whatever else competes for the cores meanwhile. Queueing a batch is
        # a list append; timing it per request cost more than the append.
        self._busy = 0.0

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        features: Sequence[str],
        classes: Sequence[Any],
        window: int | None,
        min_rows: int | None,
        shared: SharedCounts | None = None,
    ) -> LiveDrift:
        """The window and drift rule the profile recorded from params.yaml, unless overridden."""
        live = profile.live
        size = window or (live.window if live is not None else DEFAULT_WINDOW)
        thresholds = live.thresholds if live is not None else Thresholds()
        if min_rows is not None:
            thresholds = msgspec.structs.replace(thresholds, min_rows=min_rows)
        if not window_can_report(size, thresholds.min_rows):
            raise SchemaError(
                f"live drift needs {thresholds.min_rows} rows before it reports, more than the "
                f"window of {size}; set --drift-window or --drift-min-rows"
            )
        return cls(profile, features, classes, size, thresholds, shared)

    # --- the request path: queue only

    def observe(self, answered: Answered) -> None:
        with self._lock:
            self._rows.extend(answered.rows)
            self._proba.append(answered.proba)
            if len(self._rows) > 2 * self.window.window:
                # Rows the window would evict at the next flush anyway: drop them now, so the
                # queue stays bounded however slowly the flusher runs.
                keep = self.window.window
                self._rows = self._rows[-keep:]
                self._proba = [np.concatenate(self._proba)[-keep:]]

    # --- the flusher thread

    def start(self) -> None:
        """Bin the queued rows into the window once every FLUSH_SECONDS, on a thread of its own."""
        self._stopping.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="live-drift", daemon=True)
        self._flusher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush()

    def _flush_loop(self) -> None:
        while not self._stopping.wait(FLUSH_SECONDS):
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
        if self.shared is not None:
            self.shared.publish(*self.window.counts())
        with self._lock:
            self._busy += time.thread_time() - started

    # --- snapshot (scrape and GET /v1/drift)

    def snapshot(self) -> DriftReport:
        return self.merged()[0]

    def merged(self) -> tuple[DriftReport, int]:
        """The report over this worker's window, plus every other worker's when there are several,
        and how many rows those windows hold when full."""
        self.flush()
        counts, rows = self.window.counts()
        workers = 1
        if self.shared is not None:
            counts, rows, workers = self.shared.total(counts, rows)
        return self.window.report(counts, rows), workers * self.window.window

    def add_samples(self, families: DriftFamilies, version: str) -> None:
        """This window's gauges (every worker's, added) as samples labelled with the model version."""
        report, capacity = self.merged()
        with self._lock:
            families.busy.add_metric([version], self._busy)
        families.capacity.add_metric([version], capacity)
        families.rows.add_metric([version], report.rows)
        for name, d in report.features.items():
            families.severity.add_metric([version, name], SEVERITY[d.status])
            if d.psi is not None and d.p_value is not None:
                families.psi.add_metric([version, name], d.psi)
                families.p_value.add_metric([version, name], d.p_value)
        for cls, d in report.predictions.items():
            families.prediction_severity.add_metric([version, cls], SEVERITY[d.status])
            if d.psi is not None:
                families.prediction_psi.add_metric([version, cls], d.psi)


class DriftFamilies(NamedTuple):
    """The live drift gauges, each with a `version` label: one window per served model."""

    rows: GaugeMetricFamily
    capacity: GaugeMetricFamily
    busy: CounterMetricFamily
    psi: GaugeMetricFamily
    p_value: GaugeMetricFamily
    severity: GaugeMetricFamily
    prediction_psi: GaugeMetricFamily
    prediction_severity: GaugeMetricFamily

    @classmethod
    def empty(cls) -> DriftFamilies:
        v, feature, scored = ["version"], ["version", "feature"], ["version", "class"]
        return cls(
            GaugeMetricFamily(
                "modelops_drift_window_rows", "Answered rows in the live drift window", labels=v
            ),
            GaugeMetricFamily(
                "modelops_drift_window_capacity",
                "Rows the live drift window holds when full",
                labels=v,
            ),
            CounterMetricFamily(
                "modelops_drift_update_seconds",
                "CPU seconds spent binning answered rows into the live drift window",
                labels=v,
            ),
            GaugeMetricFamily(
                "modelops_feature_psi",
                "PSI of each feature over the live window against the training profile",
                labels=feature,
            ),
            GaugeMetricFamily(
                "modelops_feature_drift_pvalue",
                "Chi-square p-value of each feature's PSI over the live window",
                labels=feature,
            ),
            GaugeMetricFamily(
                "modelops_feature_drift_severity",
                f"Drift status per feature: {SEVERITY_LEGEND}",
                labels=feature,
            ),
            GaugeMetricFamily(
                "modelops_prediction_psi",
                "PSI of the predicted probability of each scored class over the live window",
                labels=scored,
            ),
            GaugeMetricFamily(
                "modelops_prediction_drift_severity",
                f"Drift status per scored class: {SEVERITY_LEGEND}",
                labels=scored,
            ),
        )


class DriftGauges:
    """The Prometheus collector of every served model's live window, by model version."""

    def __init__(self, windows: Mapping[str, LiveDrift]) -> None:
        self.windows = dict(windows)

    def describe(self) -> Iterator[Metric]:
        return iter(DriftFamilies.empty())

    def collect(self) -> Iterator[Metric]:
        families = DriftFamilies.empty()
        for version, window in self.windows.items():
            window.add_samples(families, version)
        return iter(families)
