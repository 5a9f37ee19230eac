"""A real Prometheus (Debian package) scrapes a real server on loopback; queries through its HTTP
API see the model and the requests, and the Grafana dashboard asks only for names that exist."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelops import files
from modelops.registry import bundle
from tests.conftest import require_tool
from tests.serve.conftest import READY_TIMEOUT, Server, Trained, free_port, source, start_server
from tests.serve.test_deploy import dashboard, dashboard_exprs, exported_names, metric_names


@pytest.fixture(scope="module")
def server(
    trained: Trained,
    trained_next: Trained,
    trained_fallback: Trained,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server of several models (a shadow, and a canary at 0% so that the primary answers
    everything), so every family the dashboard and the alerts use is in its exposition."""
    running = start_server(
        trained.bundle_dir,
        tmp_path_factory.mktemp("served"),
        "--shadow",
        source(trained_fallback),
        "--canary",
        f"{source(trained_next)}:0%",
    )
    with httpx.Client(base_url=running.url, timeout=10) as http:
        for i in range(0, 40, 4):  # some traffic, so every counter and histogram has samples
            assert (
                http.post(
                    "/v1/predict", json={"instances": trained.records()[i : i + 4]}
                ).status_code
                == 200
            )
        assert http.post("/v1/predict", json={"instances": []}).status_code == 400
        outcome = {"id": "a", "label": 1, "observed_at": "2026-11-01T00:00:00Z"}
        assert http.post("/v1/feedback", json={"outcomes": [outcome]}).status_code == 200
        deadline = time.monotonic() + READY_TIMEOUT
        while 'modelops_shadow_rows_total{version="v0.9.0"} 40.0' not in http.get("/metrics").text:
            assert time.monotonic() < deadline, "the shadow did not score the traffic"
            time.sleep(0.05)  # it scores off the response path
    yield running
    running.stop()


@pytest.fixture(scope="module")
def prometheus(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    repo_config = yaml.safe_load(
        (Path(__file__).parents[2] / "deploy/prometheus/prometheus.yml").read_text()
    )
    scrape = repo_config["scrape_configs"][0]
    scrape["static_configs"][0]["targets"] = [server.url.removeprefix("http://")]
    scrape["scrape_interval"] = "1s"
    repo_config["rule_files"] = [str(Path(__file__).parents[2] / "deploy/prometheus/alerts.yml")]
    (work / "prometheus.yml").write_text(yaml.safe_dump(repo_config))
    port = free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def query(base: str, promql: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Poll until the instant query returns samples (scrapes arrive every second)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=5) as http:
        while True:
            try:
                response = http.get("/api/v1/query", params={"query": promql})
                # 503 (plain text) while Prometheus is still starting up
                body = response.json() if response.status_code == 200 else {}
                if body.get("status") == "success" and body["data"]["result"]:
                    return list(body["data"]["result"])
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"no samples for {promql}"
            time.sleep(0.5)


def test_prometheus_scrapes_model_info_and_request_counters(
    prometheus: str, trained: Trained
) -> None:
    info = query(prometheus, 'modelops_model_info{role="primary"}')
    labels = info[0]["metric"]
    assert (
        labels["job"] == "modelops" and labels["name"] == "churn" and labels["version"] == "v1.0.0"
    )
    assert (
        labels["sha256"] == files.read_json(trained.bundle_dir / bundle.CARD)["artifact"]["sha256"]
    )
    ok = query(prometheus, 'modelops_http_requests_total{endpoint="/v1/predict",status="200"}')
    assert float(ok[0]["value"][1]) == 10
    bad = query(prometheus, 'modelops_http_requests_total{endpoint="/v1/predict",status="400"}')
    assert float(bad[0]["value"][1]) == 1
    assert float(query(prometheus, 'up{job="modelops"}')[0]["value"][1]) == 1


def test_prometheus_loaded_the_alert_rules(prometheus: str) -> None:
    query(prometheus, "up")  # wait until it runs
    with httpx.Client(base_url=prometheus, timeout=5) as http:
        groups = http.get("/api/v1/rules").json()["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"]}
    assert {
        "ModelopsNotReady",
        "ModelopsHighErrorRate",
        "ModelopsFeatureDriftSignificant",
    } <= alerts


def test_live_exposition_passes_promtool(server: Server) -> None:
    text = httpx.get(server.url + "/metrics").text
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dashboard_queries_only_names_the_service_exports(server: Server) -> None:
    exported = exported_names(httpx.get(server.url + "/metrics").text)
    titles = [p["title"] for p in dashboard()["panels"]]
    assert any("Shadow" in t for t in titles) and any("Canar" in t for t in titles)
    for expr in dashboard_exprs():
        used = metric_names(expr)
        assert used, expr
        assert used <= exported, (expr, used - exported)
