"""The app through Litestar's test client: endpoints, answers equal to the Pipeline, hostile input,
observability, and loading that refuses anything but the registered model."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from modelops import files
from modelops.cli import main
from modelops.errors import ArtifactIntegrityError
from modelops.registry import bundle
from modelops.serve.app import create_app
from modelops.serve.config import ServeConfig
from tests.conftest import require_tool

from .conftest import HOSTILE, Trained, post, read_log, serve_client, trusting, wait_ready

TOL = 1e-9


def answer(client: TestClient[Any], records: list[dict[str, Any]]) -> np.ndarray:
    response = post(client, {"instances": records})
    assert response.status_code == 200, response.text
    return np.array([list(p["probabilities"].values()) for p in response.json()["predictions"]])


def test_predict_answers_with_the_model_and_a_request_id(
    client: TestClient[Any], trained: Trained
) -> None:
    records = trained.records()[:3]
    response = post(client, {"instances": records})
    assert response.status_code == 200
    body = response.json()
    card = files.read_json(trained.bundle_dir / bundle.CARD)
    assert body["model"] == {
        "name": "churn",
        "version": "v1.0.0",
        "sha256": card["artifact"]["sha256"],
    }
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-model-version"] == "v1.0.0"
    assert [set(p) for p in body["predictions"]] == [{"label", "probabilities"}] * 3
    proba = trained.expected(trained.test.head(3))
    for prediction, p in zip(body["predictions"], proba, strict=True):
        assert prediction["probabilities"] == pytest.approx({"0": p[0], "1": p[1]}, abs=TOL)
        # The label follows the threshold the model was evaluated at (0.5 on the positive class).
        assert prediction["label"] == (1 if p[1] >= 0.5 else 0)


def test_answers_equal_the_pipeline_on_every_test_row_missing_values_included(
    client: TestClient[Any], trained: Trained
) -> None:
    records = trained.records()
    assert any(v is None for r in records for v in r.values())
    want = trained.expected()
    # Every row on its own, then in batches: small ones take the compiled tree walk, large ones the
    # estimator's own predict_proba.
    for size in (1, 25, 400):
        got = np.vstack(
            [answer(client, records[i : i + size]) for i in range(0, len(records), size)]
        )
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_a_pipeline_without_a_fast_path_is_served_and_reported(
    trained_fallback: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelops.serve")
    config = ServeConfig(log_dir=str(tmp_path))
    with serve_client(trained_fallback.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        records = trained_fallback.records()
        got = np.vstack([answer(c, records[i : i + 100]) for i in range(0, len(records), 100)])
        np.testing.assert_allclose(got, trained_fallback.expected(), rtol=0, atol=TOL)
        inference = c.get("/v1/model").json()["inference"]
        metrics = c.get("/metrics").text
    assert inference["path"] == "pipeline"
    assert "'numeric/scale' is a MinMaxScaler" in inference["detail"]
    [path] = [line for line in metrics.splitlines() if line.startswith("modelops_inference_path{")]
    assert 'version="v0.9.0"' in path and 'path="pipeline"' in path
    assert re.search(r'reason="no fast path: .*MinMaxScaler', path)
    [ready] = [r for r in caplog.records if r.getMessage() == "model ready"]
    assert ready.levelno == logging.WARNING
    assert ready.fields["inference_path"] == "pipeline"  # type: ignore[attr-defined]


def test_every_response_carries_the_model_version_and_a_request_id(
    client: TestClient[Any],
) -> None:
    responses = [
        client.get("/health/live"),
        client.get("/metrics"),
        client.get("/schema"),
        client.get("/no/such/path"),
        client.delete("/v1/predict"),
        client.post("/v1/predict", content=b"{}", headers={"content-type": "text/csv"}),
        post(client, {"instances": []}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 405, 415, 400]
    for r in responses:
        assert r.headers["x-model-version"] == "v1.0.0"
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert responses[4].headers["allow"] == "POST, OPTIONS"


def test_a_sane_client_request_id_is_kept_others_replaced(
    client: TestClient[Any], trained: Trained
) -> None:
    body = {"instances": trained.records()[:1]}
    kept = post(client, body, headers={"x-request-id": "order-42:retry.1"})
    assert kept.headers["x-request-id"] == kept.json()["request_id"] == "order-42:retry.1"
    replaced = post(client, body, headers={"x-request-id": "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.json()["request_id"])


def test_model_endpoint_returns_version_lineage_and_metrics(
    client: TestClient[Any], trained: Trained
) -> None:
    body = client.get("/v1/model").json()
    card = files.read_json(trained.bundle_dir / bundle.CARD)
    assert (body["name"], body["version"], body["commit"], body["stages"]) == (
        "churn",
        "v1.0.0",
        "1" * 40,
        ["prod"],
    )
    assert body["artifact"] == card["artifact"]
    assert body["feature_schema"] == card["feature_schema"]
    assert body["libraries"] == card["libraries"]
    assert "reference" not in body  # training rows stay out of a public endpoint
    assert body["metrics"]["roc_auc"] > 0.6
    assert body["decision"] == {"rule": "threshold", "positive": 1, "threshold": 0.5}
    assert body["ready"] is True
    assert body["inference"]["path"] == "fastpath"


def test_health_endpoints(client: TestClient[Any]) -> None:
    assert client.get("/health/live").json() == {"status": "live", "reason": None}
    assert client.get("/health/ready").json() == {"status": "ready", "reason": None}


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_input_gets_a_4xx_that_does_not_echo_it(
    client: TestClient[Any], name: str, body: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["status"] == status
    assert error["errors"] and all(set(e) == {"field", "message"} for e in error["errors"])
    assert "SECRET" not in response.text
    assert len(response.content) < 20_000


def test_hostile_instances_are_rejected_field_by_field(
    client: TestClient[Any], trained: Trained
) -> None:
    good = trained.records()[0]
    bad = [
        {**good, "age": True},
        {**good, "tenure_months": None},  # not nullable
        {**good, "contract": "SECRET-lifetime"},  # strict
        {**good, "region": "SECRET" * 100},  # longer than any category may be
        {**good, "injected": "SECRET"},
    ]
    response = post(client, {"instances": bad})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [
        "$.instances[0].age",
        "$.instances[1].tenure_months",
        "$.instances[2].contract",
        "$.instances[3].region",
        "$.instances[4].injected",
    ]
    assert "SECRET" not in response.text
    too_many = post(client, {"instances": [good] * 1001})
    assert too_many.status_code == 400
    assert too_many.json()["errors"] == [
        {"field": "$.instances", "message": "has 1001 instances; send 1 to 1000"}
    ]


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text: str, series: str, **labels: str) -> float:
    """The value of one sample in an exposition, 0 when absent (labels in any order)."""
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m["name"] == series and dict(_LABEL.findall(m["labels"] or "")) == labels:
            return float(m["value"])
    return 0.0


def test_metrics_count_requests_predictions_failures_and_unseen_categories(
    trained: Trained, tmp_path: Path
) -> None:
    app = create_app(
        trained.bundle_dir, trusting(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path)))
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        records = trained.records()[:10]
        records[0] = {**records[0], "region": "region_new", "plan": "platinum"}
        assert post(c, {"instances": records}).status_code == 200
        assert post(c, {"instances": [{**records[1], "age": 5}]}).status_code == 400
        c.get("/nope")
    # Read once the lifespan has closed, so the background writer has seen every answer.
    text = app.state.service.exposition().decode()
    assert (
        metric(
            text,
            "modelops_http_requests_total",
            endpoint="/v1/predict",
            method="POST",
            status="200",
        )
        == 1
    )
    assert (
        metric(
            text,
            "modelops_http_requests_total",
            endpoint="/v1/predict",
            method="POST",
            status="400",
        )
        == 1
    )
    assert (
        metric(text, "modelops_http_requests_total", endpoint="other", method="GET", status="404")
        == 1
    )
    # Every route of the app is its own label (wait_ready polled this one until it said 200).
    ready = {"endpoint": "/health/ready", "method": "GET", "status": "200"}
    assert metric(text, "modelops_http_requests_total", **ready) >= 1
    assert metric(text, "modelops_validation_failures_total", field="age") == 1
    assert metric(text, "modelops_unknown_categories_total", feature="region") == 1
    assert metric(text, "modelops_unknown_categories_total", feature="plan") == 1
    labels = sum(
        metric(text, "modelops_predictions_total", version="v1.0.0", label=v) for v in ("0", "1")
    )
    assert labels == 10
    probability = {"version": "v1.0.0", "class": "1"}
    assert metric(text, "modelops_predicted_probability_count", **probability) == 10
    assert metric(text, "modelops_request_instances_sum") == 10
    assert metric(text, "modelops_model_batch_rows_sum") == 10
    card = files.read_json(trained.bundle_dir / bundle.CARD)
    info = dict(name="churn", version="v1.0.0", sha256=card["artifact"]["sha256"], role="primary")
    assert metric(text, "modelops_model_info", **info) == 1
    assert metric(text, "modelops_model_ready") == 1
    path = dict(version="v1.0.0", path="fastpath", reason="")
    assert metric(text, "modelops_inference_path", **path) == 1
    assert metric(text, "modelops_prediction_log_rows_total") == 10
    assert metric(text, "modelops_http_request_duration_seconds_count", endpoint="/v1/predict") == 2
    assert "modelops_http_requests_in_flight" in text


def test_metrics_exposition_passes_promtool(client: TestClient[Any], trained: Trained) -> None:
    post(client, {"instances": trained.records()[:5]})
    text = client.get("/metrics").text
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_schema_is_served_and_matches_the_decoder(client: TestClient[Any]) -> None:
    doc = client.get("/schema").json()
    assert doc == client.get("/schema/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/predict",
        "/v1/feedback",
        "/v1/model",
        "/v1/drift",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    predict = doc["paths"]["/v1/predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "413", "415", "503"}
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert predict["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"
    }
    assert set(predict["responses"]["200"]["headers"]) == {"X-Model-Version", "X-Request-ID"}
    schemas = doc["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(schemas)
    # The components are msgspec's own rendering of the types that decode and encode.
    instance = schemas["Instance"]
    assert instance["additionalProperties"] is False
    assert instance["properties"]["tenure_months"]["minimum"] == 0
    # The instance id: optional, beside the features, bounded.
    assert "id" not in instance["required"] and instance["properties"]["id"]["anyOf"][0] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
    }


# --------------------------------------------------------------------------- prediction log


def test_every_answered_row_is_in_the_prediction_log(trained: Trained, tmp_path: Path) -> None:
    config = ServeConfig(log_dir=str(tmp_path), log_rotate_rows=7)
    sent: dict[str, int] = {}
    with serve_client(trained.bundle_dir, config) as c:
        wait_ready(c)
        records = trained.records()[:30]
        for i in range(0, 30, 4):
            body = post(c, {"instances": records[i : i + 4]}).json()
            sent[body["request_id"]] = len(body["predictions"])
        post(c, {"instances": []})  # a 400 is not logged
    assert not list(tmp_path.glob("*.open"))
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) >= 30 // 8  # rotated by rows
    for segment in segments:
        assert re.fullmatch(r"predictions-\d{8}T\d{6}-\d+-\d{6}\.jsonl", segment.name)
    lines = read_log(tmp_path)
    assert len(lines) == 30
    assert {line["request_id"] for line in lines} == set(sent)
    first = lines[0]
    assert set(first) == {"timestamp", "request_id", "model", "inputs", "output"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"])
    assert first["model"] == {"name": "churn", "version": "v1.0.0"}
    assert list(first["inputs"]) == trained.schema.names
    assert first["inputs"] == pytest.approx(records[0])
    want = trained.expected(trained.test.head(1))[0]
    assert first["output"]["probabilities"] == pytest.approx({"0": want[0], "1": want[1]}, abs=TOL)


# --------------------------------------------------------------------------- loading


def test_a_modified_model_file_is_never_unpickled(copy_bundle: Path, tmp_path: Path) -> None:
    config = trusting(copy_bundle, ServeConfig(log_dir=str(tmp_path)))
    with open(copy_bundle / bundle.MODEL, "ab") as f:
        f.write(b"\0")
    with serve_client(copy_bundle, config) as c:
        body = wait_ready(c)
    assert body["status"] == "failed"
    assert re.search(r"model.joblib: sha256 .* does not match the manifest's", body["reason"])


MARKER_PICKLE = """
import os, pickle, sys

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[1],))

sys.stdout.buffer.write(pickle.dumps(Payload()))
"""


def test_a_bundle_rewritten_to_match_a_malicious_model_is_refused_before_unpickling(
    copy_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trusted = bundle.manifest_sha256(copy_bundle)  # what the registry printed when it bundled
    marker = tmp_path / "unpickled"
    payload = subprocess.run(
        [sys.executable, "-c", MARKER_PICKLE, str(marker)], capture_output=True, check=True
    ).stdout
    (copy_bundle / bundle.MODEL).write_bytes(payload)
    card = files.read_json(copy_bundle / bundle.CARD)
    card["artifact"]["sha256"] = files.sha256(copy_bundle / bundle.MODEL)  # every hash rewritten
    files.write_json(copy_bundle / bundle.CARD, card)
    bundle.write_manifest(copy_bundle, "churn", "v9.9.9", "1" * 40, ["prod"])
    with pytest.raises(ArtifactIntegrityError, match=r"bundle.json: sha256 .* is not the trusted"):
        create_app(copy_bundle, ServeConfig(log_dir=str(tmp_path), bundle_sha256=trusted))
    args = ["serve", "--bundle", str(copy_bundle), "--bundle-sha256", trusted, "--port", "1"]
    assert main(args) == 1
    assert "is not the bundle the registry (or --bundle-sha256) vouches for" in (
        capsys.readouterr().err
    )
    assert not marker.exists()


def test_a_bundle_without_a_root_of_trust_does_not_start(
    copy_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--bundle", str(copy_bundle), "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "no digest vouches for this bundle; pass --bundle-sha256" in err
    assert main(["serve", "--bundle", str(copy_bundle), "--bundle-sha256", "abc"]) == 2
    assert "--bundle-sha256" in capsys.readouterr().err


def test_a_bundle_whose_manifest_names_another_model_is_refused(copy_bundle: Path) -> None:
    bundle.write_manifest(copy_bundle, "fraud", "v1.0.0", "1" * 40, [])
    with pytest.raises(
        ArtifactIntegrityError, match="the manifest and the card describe different"
    ):
        create_app(copy_bundle, trusting(copy_bundle))


def test_wrong_reference_predictions_keep_the_server_unready(
    copy_bundle: Path, tmp_path: Path
) -> None:
    card = files.read_json(copy_bundle / bundle.CARD)
    card["reference"]["probabilities"][0][0] += 0.01
    files.write_json(copy_bundle / bundle.CARD, card)
    bundle.write_manifest(copy_bundle, "churn", "v1.0.0", "1" * 40, [])
    with serve_client(copy_bundle, ServeConfig(log_dir=str(tmp_path))) as c:
        body = wait_ready(c)
        assert body["status"] == "failed"
        assert "differs from the trained one on the card's reference rows" in body["reason"]
        assert c.get("/health/ready").status_code == 503
        assert c.get("/health/live").status_code == 200
        response = post(c, {"instances": [json.loads(json.dumps(card["reference"]["rows"][0]))]})
        assert response.status_code == 503
        assert "model failed verification" in response.json()["errors"][0]["message"]
        assert metric(c.get("/metrics").text, "modelops_model_ready") == 0
