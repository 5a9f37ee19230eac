"""The service's Prometheus metrics, one CollectorRegistry per app (or, with several workers,
prometheus_client's multiprocess mode summing every worker's values): what they are, and how they
are exposed. Per-request counts reach them in bulk through `serve/tallies.py`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from modelops.errors import DataIssue
from modelops.serve.contract import ID

# Litestar appends "; charset=utf-8" to text/* media types itself.
MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
# Mean |Δp| between a shadow's probabilities and the answer's, per row.
DIFF_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
_INSTANCE_FIELD = re.compile(r"^\$\.instances\[\d+\](?:\.(?P<key>.+))?$")


class ServeMetrics:
    """Every metric the service exports, registered in its own registry."""

    def __init__(self, features: Sequence[str]) -> None:
        # The *_created series double the exposition without telling an operator anything; the
        # switch is process-wide, which suits a process that serves one model.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # With several workers, metrics are summed over every worker's files (prometheus_client's
        # multiprocess mode), which has no process_* series: each worker has its own process.
        self.shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.collectors: list[Collector] = []
        if not self.shared:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.requests = Counter(
            "modelops_http_requests",
            "HTTP requests answered, by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "modelops_http_request_duration_seconds",
            "Time from request start to the last byte of the response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "modelops_http_requests_in_flight",
            "Requests being handled now",
            multiprocess_mode="livesum",
            registry=r,
        )
        # Predictions by label and the predicted-probability histogram: added a whole batch at a
        # time (serve/tallies.py), since per-row observe() calls cost more than scoring the row.
        self.predictions = Counter(
            "modelops_predictions",
            "Rows answered, by the answering model's version and the predicted label",
            ["version", "label"],
            registry=r,
        )
        self.probability = Histogram(
            "modelops_predicted_probability",
            "Predicted probability of each scored class, by the answering model's version",
            ["version", "class"],
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.validation_failures = Counter(
            "modelops_validation_failures",
            "Contract violations in predict requests, by field",
            ["field"],
            registry=r,
        )
        self.unknown_categories = Counter(
            "modelops_unknown_categories",
            "Rows with a category training never saw (accepted), by feature",
            ["feature"],
            registry=r,
        )
        self.request_instances = Histogram(
            "modelops_request_instances",
            "Instances per accepted predict request",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelops_model_batch_rows",
            "Rows per model call after micro-batching concurrent requests",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "modelops_model_call_duration_seconds",
            "Time per model call (one micro-batch), queueing for the model thread included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_wait = Histogram(
            "modelops_batch_wait_seconds",
            "Time a micro-batch waited for concurrent requests before its model call",
            buckets=(0.00001, 0.0001, *LATENCY_BUCKETS),
            registry=r,
        )
        self.model_info = Gauge(
            "modelops_model_info",
            "Each model this process serves, in its role: primary, canary or shadow (always 1)",
            ["name", "version", "sha256", "role"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.ready = Gauge(
            "modelops_model_ready",
            "1 once every model is loaded and reproduces its card's reference predictions",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.inference_path = Gauge(
            "modelops_inference_path",
            "How each model scores rows (1 for the path in use): fastpath, or pipeline with the "
            "reason",
            ["version", "path", "reason"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.log_rows = Counter(
            "modelops_prediction_log_rows", "Rows written to the prediction log", registry=r
        )
        self.log_segments = Counter(
            "modelops_prediction_log_segments",
            "Prediction log segments completed (renamed to .jsonl)",
            registry=r,
        )
        self.log_errors = Counter(
            "modelops_prediction_log_errors",
            "Failures writing the prediction log or finishing its segments",
            registry=r,
        )
        self.log_writable = Gauge(
            "modelops_prediction_log_writable",
            "1 while the prediction log takes rows; 0 while it cannot, and predictions get 503",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.log_write_seconds = Histogram(
            "modelops_prediction_log_write_seconds",
            "Time per group write of answered rows to the prediction log (before the answers)",
            buckets=(0.00001, 0.0001, *LATENCY_BUCKETS),
            registry=r,
        )
        self.feedback_outcomes = Counter(
            "modelops_feedback_outcomes",
            "Outcomes written to the feedback log (POST /v1/feedback)",
            registry=r,
        )
        self.feedback_log_errors = Counter(
            "modelops_feedback_log_errors",
            "Failures writing the feedback log or finishing its segments",
            registry=r,
        )
        self.feedback_log_writable = Gauge(
            "modelops_feedback_log_writable",
            "1 while the feedback log takes outcomes; 0 while it cannot, and feedback gets 503",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.canary_share = Gauge(
            "modelops_canary_share_percent",
            "Percent of the traffic each canary answers (PUT /admin/canary changes it)",
            ["version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.shadow_rows = Counter(
            "modelops_shadow_rows",
            "Rows a shadow model scored beside the answer the client got",
            ["version"],
            registry=r,
        )
        self.shadow_agreement = Counter(
            "modelops_shadow_agreement",
            "Rows a shadow model scored whose label equals the answer's",
            ["version"],
            registry=r,
        )
        self.shadow_abs_diff = Histogram(
            "modelops_shadow_abs_diff",
            "Mean |Δp| over the classes between a shadow's probabilities and the answer's, per row",
            ["version"],
            buckets=DIFF_BUCKETS,
            registry=r,
        )
        self.shadow_lost = Counter(
            "modelops_shadow_lost_rows",
            "Rows a shadow did not score (backlog full) or could not log (log unwritable)",
            ["version", "reason"],
            registry=r,
        )
        self._features = frozenset(features)

    def add_model(self, name: str, version: str, sha256: str, role: str) -> None:
        self.model_info.labels(name, version, sha256, role).set(1)

    def register(self, collector: Collector) -> None:
        """A collector of values kept in this process (live drift); with several workers it is
        asked at every scrape, next to the summed files."""
        self.collectors.append(collector)
        if not self.shared:
            self.registry.register(collector)

    def exposition(self) -> bytes:
        if not self.shared:
            return generate_latest(self.registry)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape, path=self.shared)  # type: ignore[no-untyped-call]
        for collector in self.collectors:
            scrape.register(collector)
        return generate_latest(scrape)

    def observe_batch(self, rows: int, waited: float, scored: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_wait.observe(waited)
        self.model_seconds.observe(scored)

    def observe_invalid(self, issues: Iterable[DataIssue]) -> None:
        for field in {self._field_label(i.column) for i in issues}:
            self.validation_failures.labels(field).inc()

    def observe_unseen(self, counts: dict[str, int]) -> None:
        for feature, n in counts.items():
            self.unknown_categories.labels(feature).inc(n)

    def _field_label(self, path: str) -> str:
        """A JSON path as a bounded label: the feature, or one of a few fixed names."""
        if path == "$":
            return "(body)"
        if path == "$.instances":
            return "instances"
        if path in self._features:  # the Open Inference Protocol names the input
            return path
        if path == ID:  # ... and the instance ids' input
            return "(instance id)"
        if path.startswith("$.outcomes"):
            return "(feedback)"
        m = _INSTANCE_FIELD.match(path)
        if m is None:
            return "(unknown field)"
        key = m.group("key")
        if key is None:
            return "(instance)"
        if key in self._features:
            return key
        return "(instance id)" if key == ID else "(unknown field)"

    def set_inference_path(self, version: str, path: str, reason: str) -> None:
        self.inference_path.labels(version, path, reason).set(1)


def add_observations(child: Any, counts: Sequence[int], total: float) -> None:
    """Add observations already binned (`counts[i]` in bucket i, not cumulative; the last is +Inf)
    and their sum to a Histogram child. prometheus_client observes one value at a time; its
    per-bucket values and sum are the child's `_buckets` and `_sum` (read here only;
    tests/serve/test_tallies.py checks this equals observing each value)."""
    if not any(counts):
        return
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, counts, strict=True):
        if n:
            bucket.inc(n)
