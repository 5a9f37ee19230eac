"""Per-request tallies reach the Prometheus metrics in bulk exactly as per-request calls would."""

from __future__ import annotations

import random

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from modelops.serve.metrics import LATENCY_BUCKETS, ServeMetrics, add_observations
from modelops.serve.predlog import Answered
from modelops.serve.tallies import Tallies


def test_adding_binned_observations_equals_observing_each_value() -> None:
    # The one place that reads prometheus_client's private histogram values: if a release changes
    # them, this fails rather than the exposition going wrong quietly.
    values = [random.Random(7).expovariate(200) for _ in range(500)] + [0.01, 20.0]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    a = Histogram("t", "t", ["e"], buckets=LATENCY_BUCKETS, registry=one)
    b = Histogram("t", "t", ["e"], buckets=LATENCY_BUCKETS, registry=bulk)
    for v in values:
        a.labels("x").observe(v)
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for v in values:
        counts[next((i for i, bound in enumerate(LATENCY_BUCKETS) if v <= bound), -1)] += 1
    add_observations(b.labels("x"), counts, sum(values))

    def samples(registry: CollectorRegistry) -> list[str]:
        return [x for x in generate_latest(registry).decode().splitlines() if "_created" not in x]

    assert samples(one) == samples(bulk)


def answered(labels: list[int], p1: list[float]) -> Answered:
    proba = np.array([[1 - p, p] for p in p1])
    return Answered(0.0, "r", [()] * len(labels), proba, labels, [], [])


def test_tallies_count_requests_latencies_sizes_and_answers() -> None:
    metrics = ServeMetrics(["a"])
    tallies = Tallies(metrics, [0, 1], [1])
    tallies.in_flight = 3
    for _ in range(5):
        tallies.request("/v1/predict", "POST", 200, 0.003)
    tallies.request("/nope", "GET", 404, 0.0001)
    tallies.instances(1)
    tallies.instances(1000)
    tallies.observe("v1", answered([1, 0, 1], [0.9, 0.1, 0.55]))
    tallies.observe("v1", answered([0], [0.05]))
    tallies.observe("v2", answered([1], [0.7]))
    tallies.apply()
    tallies.apply()  # nothing new: nothing counted twice
    text = metrics.exposition().decode()
    assert (
        'modelops_http_requests_total{endpoint="/v1/predict",method="POST",status="200"} 5.0'
        in text
    )
    assert 'modelops_http_requests_total{endpoint="/nope",method="GET",status="404"} 1.0' in text
    assert (
        'modelops_http_request_duration_seconds_bucket{endpoint="/v1/predict",le="0.005"} 5.0'
        in text
    )
    assert (
        'modelops_http_request_duration_seconds_bucket{endpoint="/v1/predict",le="0.002"} 0.0'
        in text
    )
    assert "modelops_http_requests_in_flight 3.0" in text
    assert "modelops_request_instances_count 2.0" in text
    assert "modelops_request_instances_sum 1001.0" in text
    assert 'modelops_predictions_total{label="1",version="v1"} 2.0' in text
    assert 'modelops_predictions_total{label="0",version="v1"} 2.0' in text
    assert 'modelops_predictions_total{label="1",version="v2"} 1.0' in text
    assert 'modelops_predicted_probability_bucket{class="1",le="0.1",version="v1"} 2.0' in text
    assert 'modelops_predicted_probability_bucket{class="1",le="+Inf",version="v1"} 4.0' in text
    assert 'modelops_predicted_probability_sum{class="1",version="v1"} 1.6' in text
    assert 'modelops_predicted_probability_bucket{class="1",le="0.7",version="v2"} 1.0' in text
