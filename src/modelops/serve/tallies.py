"""What each request adds to the metrics in; the same counts added to the Prometheus metrics in bulk
out, twice a second and before every scrape.

Per request, a handful of `Counter.inc`/`Histogram.observe` calls (each taking a lock, each a few
Python calls deep) cost more than scoring a row with the fast path. Here a request only adds to
plain ints and lists on the event loop's thread (the only thread that touches them), and `apply`
moves the sums into prometheus_client's metrics, whose values are then what the exposition shows,
for one process or, in multiprocess mode, summed over every worker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.serve.metrics import (
    LATENCY_BUCKETS,
    PROBABILITY_BUCKETS,
    SIZE_BUCKETS,
    ServeMetrics,
    add_observations,
)
from modelops.serve.predlog import Answered
from modelops.types import FloatArray


class _Histogram:
    """Observations binned as a Prometheus histogram bins them (bucket i: value <= bound i)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def take(self) -> tuple[list[int], float]:
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * (len(self.bounds) + 1), 0.0
        return counts, total


@dataclass
class _ShadowTally:
    """One shadow's rows scored, labels agreeing with the answer, binned mean |Δp| and its sum."""

    diffs: list[int]
    rows: int = 0
    agreed: int = 0
    total: float = 0.0


class Tallies:
    """Request counts, latencies, sizes and answers since the last `apply`."""

    def __init__(
        self, metrics: ServeMetrics, classes: Sequence[Any], scored: Sequence[Any]
    ) -> None:
        self.metrics = metrics
        self.in_flight = 0
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._latency: dict[str, _Histogram] = {}
        self._instances = _Histogram(SIZE_BUCKETS)
        self._classes = list(classes)
        self._index = {c: i for i, c in enumerate(classes)}
        self._scored = [(self._index[c], str(c)) for c in scored]
        self._bounds = np.array(PROBABILITY_BUCKETS, dtype=np.float64)
        self._answers: list[tuple[str, Sequence[Any], FloatArray]] = []
        self._shadow: dict[str, _ShadowTally] = {}

    # ----------------------------------------------------------------------- per request

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._requests[(endpoint, method, status)] += 1
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = _Histogram(LATENCY_BUCKETS)
        latency.observe(seconds)

    def instances(self, n: int) -> None:
        self._instances.observe(n)

    def observe(self, version: str, answered: Answered) -> None:
        """A batch answered by model `version`, for the label counts and the predicted-probability
        histogram."""
        self._answers.append((version, answered.labels, answered.proba))

    def shadow(self, version: str, rows: int, agreed: int, diffs: list[int], total: float) -> None:
        """What a shadow's batch added (handed over from the shadow thread, on the event loop)."""
        tally = self._shadow.get(version)
        if tally is None:
            tally = self._shadow[version] = _ShadowTally([0] * len(diffs))
        tally.rows += rows
        tally.agreed += agreed
        tally.diffs = [a + b for a, b in zip(tally.diffs, diffs, strict=True)]
        tally.total += total

    # ----------------------------------------------------------------------- in bulk

    def apply(self) -> None:
        """Add everything tallied since the last call to the Prometheus metrics."""
        m = self.metrics
        m.in_flight.set(self.in_flight)
        requests, self._requests = self._requests, Counter()
        for (endpoint, method, status), n in requests.items():
            m.requests.labels(endpoint, method, str(status)).inc(n)
        for endpoint, latency in self._latency.items():
            add_observations(m.latency.labels(endpoint), *latency.take())
        add_observations(m.request_instances, *self._instances.take())
        self._apply_answers()

    def _apply_answers(self) -> None:
        answers, self._answers = self._answers, []
        by_version: dict[str, list[tuple[Sequence[Any], FloatArray]]] = {}
        for version, labels, proba in answers:
            by_version.setdefault(version, []).append((labels, proba))
        for version, batches in by_version.items():
            self._apply_version(version, batches)
        shadow, self._shadow = self._shadow, {}
        m = self.metrics
        for version, t in shadow.items():
            m.shadow_rows.labels(version).inc(t.rows)
            m.shadow_agreement.labels(version).inc(t.agreed)
            add_observations(m.shadow_abs_diff.labels(version), t.diffs, t.total)

    def _apply_version(self, version: str, answers: list[tuple[Sequence[Any], FloatArray]]) -> None:
        labels = [label for batch_labels, _ in answers for label in batch_labels]
        proba = np.concatenate([p for _, p in answers])
        index = np.fromiter((self._index[label] for label in labels), np.intp, len(labels))
        for cls, n in zip(
            self._classes, np.bincount(index, minlength=len(self._classes)).tolist(), strict=True
        ):
            if n:
                self.metrics.predictions.labels(version, str(cls)).inc(n)
        for i, name in self._scored:
            p = proba[:, i]
            # Bucket i holds p <= bound i (Prometheus "le"); the last one is +Inf.
            counts = np.bincount(
                np.searchsorted(self._bounds, p, side="left"), minlength=len(self._bounds) + 1
            )
            add_observations(
                self.metrics.probability.labels(version, name), counts.tolist(), float(p.sum())
            )
