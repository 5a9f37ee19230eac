"""Live drift inside the server: the last N answered rows against the bundle's frozen profile,
as Prometheus gauges and as GET /v1/drift, silent until the window is large enough."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from modelops import files
from modelops.drift.profile import Profile
from modelops.drift.status import LiveSettings, Thresholds
from modelops.errors import SchemaError
from modelops.registry import bundle
from modelops.schema import infer_and_validate
from modelops.serve.config import ConfigInvalid, ServeConfig, build
from modelops.synthetic import generate_customers
from tests.serve.conftest import Trained, params, post, serve_client, wait_ready

WINDOW, MIN_ROWS = 600, 300


def gauge(text: str, name: str, label: str | None = None, version: str = "v1.0.0") -> float | None:
    """A drift sample of the model `version`, for one feature or class when `label` is given."""
    for m in re.finditer(rf"^{name}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)$", text, re.M):
        labels = dict(re.findall(r'([a-z]+)="([^"]*)"', m["labels"]))
        if labels.pop("version", None) == version and list(labels.values()) == (
            [label] if label else []
        ):
            return float(m["value"])
    return None


def scenario_records(trained: Trained, scenario: str, n: int) -> list[dict[str, Any]]:
    raw = generate_customers(n, seed=77, scenario=scenario)  # type: ignore[arg-type]
    _, clean = infer_and_validate(raw, params().data, scenario)
    return trained.records(clean)


def send(client: TestClient[Any], records: list[dict[str, Any]], expect_rows: int) -> None:
    for i in range(0, len(records), 50):
        assert post(client, {"instances": records[i : i + 50]}).status_code == 200
    # Rows reach the window through the dispatcher thread, off the request path.
    deadline = time.monotonic() + 30
    while client.get("/v1/drift").json()["report"]["rows"] < expect_rows:
        assert time.monotonic() < deadline, "answered rows never reached the drift window"
        time.sleep(0.02)


@pytest.fixture
def client(trained: Trained, tmp_path: Path) -> Iterator[TestClient[Any]]:
    config = ServeConfig(
        log_dir=str(tmp_path / "log"), drift_window=WINDOW, drift_min_rows=MIN_ROWS
    )
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        yield c


def test_nothing_is_reported_until_the_window_has_min_rows(
    client: TestClient[Any], trained: Trained
) -> None:
    send(client, trained.records()[:100], 100)
    snapshot = client.get("/v1/drift").json()
    assert snapshot["window"] == WINDOW
    assert snapshot["report"]["status"] == "insufficient_data"
    assert all(f["psi"] is None for f in snapshot["report"]["features"].values())
    metrics = client.get("/metrics").text
    assert gauge(metrics, "modelops_drift_window_rows") == 100
    assert "modelops_feature_psi{" not in metrics and "modelops_prediction_psi{" not in metrics
    assert gauge(metrics, "modelops_feature_drift_severity", "age") == 1  # insufficient data


def test_rows_like_training_are_stable_and_gauges_match_the_snapshot(
    client: TestClient[Any], trained: Trained
) -> None:
    records = scenario_records(trained, "no_drift", WINDOW)
    send(client, records, WINDOW)
    report = client.get("/v1/drift").json()["report"]
    metrics = client.get("/metrics").text
    assert report["status"] == "stable", report
    for name, feature in report["features"].items():
        assert feature["status"] == "stable", name
        assert gauge(metrics, "modelops_feature_psi", name) == pytest.approx(feature["psi"])
        assert gauge(metrics, "modelops_feature_drift_pvalue", name) == pytest.approx(
            feature["p_value"]
        )
    assert gauge(metrics, "modelops_prediction_psi", "1") == pytest.approx(
        report["predictions"]["1"]["psi"]
    )
    assert gauge(metrics, "modelops_drift_window_rows") == WINDOW
    # What the window cost is counted, so it can be compared with the server's CPU time.
    busy = gauge(metrics, "modelops_drift_update_seconds_total")
    assert busy is not None and 0 < busy < 5


def test_a_campaign_moves_exactly_its_features_and_old_rows_leave_the_window(
    client: TestClient[Any], trained: Trained
) -> None:
    send(client, scenario_records(trained, "no_drift", WINDOW), WINDOW)
    campaign = scenario_records(trained, "campaign", WINDOW)
    for i in range(0, WINDOW, 50):
        assert post(client, {"instances": campaign[i : i + 50]}).status_code == 200
    deadline = time.monotonic() + 30
    while True:  # the window is full already; wait until the last campaign row is in it
        report = client.get("/v1/drift").json()["report"]
        flagged = {
            n for n, f in report["features"].items() if f["status"] in ("moderate", "significant")
        }
        if {"age", "contract", "tenure_months"} <= flagged or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {"age", "contract", "tenure_months"} <= flagged
    assert flagged <= {"age", "contract", "tenure_months", "total_charges", "support_calls"}
    assert report["rows"] == WINDOW  # the no-drift rows were evicted, not added to
    assert report["predictions"]["1"]["status"] in ("moderate", "significant")
    metrics = client.get("/metrics").text
    assert gauge(metrics, "modelops_feature_drift_severity", "contract") >= 2
    assert gauge(metrics, "modelops_feature_drift_severity", "monthly_charges") == 0


def test_min_rows_larger_than_the_window_is_a_config_error() -> None:
    with pytest.raises(ConfigInvalid, match=r"--drift-min-rows=900 exceeds --drift-window=500"):
        build({"drift_window": 500, "drift_min_rows": 900}, {})
    with pytest.raises(
        ConfigInvalid, match=r"MODELOPS_SERVE_DRIFT_MIN_ROWS=900 exceeds --drift-window=500"
    ):
        build({"drift_window": 500}, {"MODELOPS_SERVE_DRIFT_MIN_ROWS": "900"})


def test_live_drift_can_be_turned_off(trained: Trained, tmp_path: Path) -> None:
    config = ServeConfig(log_dir=str(tmp_path / "log"), drift_window=0)
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        assert post(c, {"instances": trained.records()[:5]}).status_code == 200
        assert c.get("/v1/drift").status_code == 404
        assert "/v1/drift" not in c.get("/schema").json()["paths"]
        assert "modelops_drift_window_rows" not in c.get("/metrics").text


def test_window_and_rule_default_to_what_the_profile_recorded_from_params(
    copy_bundle: Path, tmp_path: Path
) -> None:
    profile = Profile.decode((copy_bundle / bundle.PROFILE).read_bytes())
    rule = Thresholds(moderate=0.15, significant=0.3, alpha=0.05, min_rows=350)
    live = LiveSettings(window=700, thresholds=rule)
    files.write_json(
        copy_bundle / bundle.PROFILE, msgspec.structs.replace(profile, live=live).to_dict()
    )
    manifest = bundle.read_manifest(copy_bundle)
    bundle.write_manifest(
        copy_bundle, manifest.name, manifest.version, manifest.commit, manifest.stages
    )
    with serve_client(copy_bundle, ServeConfig(log_dir=str(tmp_path / "log"))) as c:
        assert wait_ready(c)["status"] == "ready"
        snapshot = c.get("/v1/drift").json()
        assert snapshot["window"] == 700
        assert snapshot["report"]["thresholds"] == msgspec.to_builtins(rule)
        assert gauge(c.get("/metrics").text, "modelops_drift_window_capacity") == 700
    with pytest.raises(
        SchemaError, match="needs 800 rows before it reports, more than the window of 700"
    ):
        serve_client(copy_bundle, ServeConfig(log_dir=str(tmp_path / "log"), drift_min_rows=800))
