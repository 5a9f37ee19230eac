"""`modelops serve --workers 2`: both workers answer on one port, a SIGTERM under load loses no
answered row, and one scrape shows every worker's metrics and drift, summed."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import require_tool

from .conftest import Trained, start_server
from .test_faults import Load, assert_every_200_logged


def test_two_workers_share_the_port_the_metrics_and_the_drift_and_stop_losslessly(
    trained: Trained, tmp_path: Path
) -> None:
    server = start_server(trained.bundle_dir, tmp_path, "--workers", "2")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        wait_until(lambda: http.get("/health/ready").status_code == 200)
        with Load(server.url, trained.records(), clients=8) as load:
            load.wait_for(300)
            writers = {p.name.split("-")[2] for p in server.log_dir.glob("*.jsonl.open")}
            assert len(writers) == 2, writers  # both workers answered, each with its own segment
            server.process.send_signal(signal.SIGTERM)
            status = server.process.wait(timeout=120)
    assert status == 0, server.stderr.read_text()[-2000:]
    statuses = load.statuses()
    assert statuses[200] >= 300 and set(statuses) <= {200, 503}, statuses
    assert_every_200_logged(load, server.log_dir)
    assert not list(server.log_dir.glob("*.jsonl.open"))


def test_one_scrape_sums_every_workers_requests_and_drift(trained: Trained, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    server = start_server(trained.bundle_dir, tmp_path, "--workers", "2", "--drift-window", "400")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            wait_until(lambda: http.get("/health/ready").status_code == 200)
            records = trained.records()
            pids: Counter[str] = Counter()
            for i in range(60):  # new connections: the kernel spreads them over the workers
                with httpx.Client(base_url=server.url, timeout=30) as fresh:
                    fresh.post("/v1/predict", json={"instances": records[i * 5 : i * 5 + 5]})
            for p in server.log_dir.glob("*.jsonl.open"):
                pids[p.name.split("-")[2]] += len(p.read_bytes().splitlines())
            assert len(pids) == 2 and sum(pids.values()) == 300, pids
            time.sleep(1.5)  # each worker publishes its window once a second
            text = http.get("/metrics").text
            drift = http.get("/v1/drift").json()
    finally:
        server.stop()
    assert (
        'modelops_http_requests_total{endpoint="/v1/predict",method="POST",status="200"} 60.0'
        in (text)
    )
    assert re.search(
        r"^modelops_predictions_total\{label=\"\w+\",version=\"v1.0.0\"\} ", text, re.M
    )
    assert "modelops_model_ready 1.0" in text
    assert drift["report"]["rows"] == 300 and drift["window"] == 800
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def wait_until(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.1)
