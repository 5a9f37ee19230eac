"""Instance ids and outcomes through the service: an `id` beside an instance's features is logged and
never scored; `POST /v1/feedback` takes outcomes checked against the model's classes into a feedback
log kept like the prediction log (a 200 means written, SIGKILL or not; unwritable means 503); and
the performance stage judges outcomes sent through the API exactly as it judges the same outcomes
in a file."""

from __future__ import annotations

import contextlib
import csv
import shutil
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from modelops import files
from modelops.card import load_card
from modelops.evaluation import classification_metrics
from modelops.params import PerformanceParams
from modelops.performance import join, log, outcomes, report
from modelops.performance.baseline import Baseline
from modelops.performance.judge import Model, Rule
from modelops.registry import bundle
from modelops.serve.config import ServeConfig

from .conftest import Trained, segment_lines, serve_client, start_server, wait_ready
from .test_faults import Load, wait_until

LATER = datetime.now(UTC) + timedelta(hours=1)  # outcomes are observed after the predictions


def outcome(id: str, label: Any, observed_at: datetime = LATER) -> dict[str, Any]:
    return {"id": id, "label": label, "observed_at": observed_at.isoformat()}


# --------------------------------------------------------------------------- instance ids


def test_an_instance_id_is_logged_beside_the_row_and_never_reaches_the_model(
    trained: Trained, tmp_path: Path
) -> None:
    rows = trained.records()[:4]
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path))) as c:
        wait_ready(c)
        plain = c.post("/v1/predict", json={"instances": rows}, headers={"X-Request-ID": "plain"})
        sent = [{**rows[0], "id": "acct-1"}, rows[1], {**rows[2], "id": "acct-3"}, rows[3]]
        with_ids = c.post("/v1/predict", json={"instances": sent}, headers={"X-Request-ID": "ids"})
        assert plain.status_code == with_ids.status_code == 200
        assert with_ids.json()["predictions"] == plain.json()["predictions"]
    logged = {(x["request_id"], i): x for i, x in enumerate(segment_lines(tmp_path, "predictions"))}
    by_request = [[x for (r, _), x in logged.items() if r == rid] for rid in ("plain", "ids")]
    assert [x.get("id") for x in by_request[1]] == ["acct-1", None, "acct-3", None]
    assert all("id" not in x for x in by_request[0])
    # The inputs are the features alone, as without ids.
    assert [x["inputs"] for x in by_request[1]] == [x["inputs"] for x in by_request[0]] == rows


def test_a_bad_instance_id_is_named_and_refused(trained: Trained, tmp_path: Path) -> None:
    row = trained.records()[0]
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path))) as c:
        wait_ready(c)
        body = {"instances": [{**row, "id": ""}, {**row, "id": 7}, {**row, "id": "x" * 257}]}
        refused = c.post("/v1/predict", json=body)
    assert refused.status_code == 400
    errors = {e["field"]: e["message"] for e in refused.json()["errors"]}
    assert errors == {
        "$.instances[0].id": "Expected `str` of length >= 1",
        "$.instances[1].id": "Expected `str | null`, got `int`",
        "$.instances[2].id": "Expected `str` of length <= 256",
    }
    assert not segment_lines(tmp_path, "predictions")


# --------------------------------------------------------------------------- POST /v1/feedback


def test_feedback_is_checked_against_the_models_classes_every_problem_named(
    trained: Trained, tmp_path: Path
) -> None:
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path))) as c:
        wait_ready(c)
        bad = {
            "outcomes": [
                outcome("a", 2),
                {"id": "b", "label": "1", "observed_at": "2026-11-01T09:30:00", "note": "x"},
                {"label": 1, "observed_at": LATER.isoformat()},
            ],
            "extra": True,
        }
        refused = c.post("/v1/feedback", json=bad)
        empty = c.post("/v1/feedback", json={"outcomes": []})
        text = c.post("/v1/feedback", content=b"id,label", headers={"content-type": "text/csv"})
        accepted = c.post(
            "/v1/feedback",
            json={"outcomes": [outcome("a", 1), outcome("b", 0)]},
            headers={"X-Request-ID": "fb-1"},
        )
        metrics = c.get("/metrics").text
    assert refused.status_code == empty.status_code == 400 and text.status_code == 415
    errors = [(e["field"], e["message"]) for e in refused.json()["errors"]]
    assert errors == [
        ("$.extra", "unknown field"),
        ("$.outcomes[0].label", "not one of the model's classes (0, 1)"),
        ("$.outcomes[1].note", "unknown field"),
        ("$.outcomes[1].label", "not one of the model's classes (0, 1)"),
        (
            "$.outcomes[1].observed_at",
            "not an ISO-8601 time with a timezone (e.g. 2026-11-01T09:30:00Z)",
        ),
        ("$.outcomes[2].id", "required field missing"),
    ]
    assert empty.json()["errors"][0]["field"] == "$.outcomes"
    assert accepted.status_code == 200
    assert accepted.json() == {"accepted": 2, "request_id": "fb-1"}
    assert "modelops_feedback_outcomes_total 2.0" in metrics
    assert 'modelops_validation_failures_total{field="(feedback)"}' in metrics
    [first, second] = segment_lines(tmp_path, "feedback")
    assert first["id"] == "a" and first["label"] == 1 and first["request_id"] == "fb-1"
    assert first["observed_at"] == LATER.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert second["label"] == 0


def test_feedback_is_documented_with_the_classes(trained: Trained, tmp_path: Path) -> None:
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path))) as c:
        document = c.get("/schema/openapi.json").json()
    operation = document["paths"]["/v1/feedback"]["post"]
    assert set(operation["responses"]) == {"200", "400", "413", "415", "503"}
    schemas = document["components"]["schemas"]
    assert schemas["Outcome"]["properties"]["label"]["enum"] == [0, 1]
    assert schemas["Outcome"]["additionalProperties"] is False


def outcomes_of(request_id: str, i: int) -> dict[str, Any]:
    """Ten outcomes, their ids made of the request's: each one traceable to its request."""
    return {"outcomes": [outcome(f"{request_id}-{j}", j % 2) for j in range(10)]}


def test_every_accepted_outcome_survives_sigkill(trained: Trained, tmp_path: Path) -> None:
    server = start_server(trained.bundle_dir, tmp_path)
    try:
        with Load(server.url, [], 4, "fb", "/v1/feedback", outcomes_of) as load:
            load.wait_for(100)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.process.kill()
    written = Counter(line["request_id"] for line in segment_lines(server.log_dir, "feedback"))
    missing = [rid for rid in load.ok() if written.get(rid) != 10]
    assert not missing, f"{len(missing)} of {len(load.ok())} accepted requests not written"
    assert list(server.log_dir.glob("feedback-*.jsonl.open"))  # the killed server's segment

    # The next server on the directory finishes it, every outcome intact.
    again = start_server(trained.bundle_dir, tmp_path / "again", log_dir=server.log_dir)
    assert again.stop() == 0
    assert not list(server.log_dir.glob("*.open"))
    assert len(segment_lines(server.log_dir, "feedback")) == sum(written.values())


def test_an_unwritable_feedback_log_answers_503_until_it_can_write_again(
    trained: Trained, tmp_path: Path
) -> None:
    server = start_server(trained.bundle_dir, tmp_path)
    body = {"outcomes": [outcome("a", 1)]}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/feedback", json=body).status_code == 200
        shutil.rmtree(server.log_dir)
        refused = http.post("/v1/feedback", json=body)
        assert refused.status_code == 503
        assert "feedback log cannot be written" in refused.json()["errors"][0]["message"]
        assert "modelops_feedback_log_writable 0.0" in http.get("/metrics").text
        wait_until(lambda: http.post("/v1/feedback", json=body).status_code == 200)
    assert server.stop() == 0
    assert [x["id"] for x in segment_lines(server.log_dir, "feedback")][-1] == "a"


# --------------------------------------------------------------------------- API == file


def _judged(trained: Trained, predictions: Path, known: Path) -> report.PerformanceReport:
    """The performance stage's report of a log and outcomes, each version judged against the
    bundle's test metrics."""
    card = load_card(trained.bundle_dir / bundle.CARD)
    classes = [str(c) for c in card.classes]
    p = msgspec.convert({"window": "52w", "min_labels": 100}, PerformanceParams)
    logged = log.read(predictions, card.name, classes)
    found = outcomes.read([known])
    width = join.window_ns(p.window)
    joined = join.join(logged, found, classes, width)
    metrics = files.read_json(trained.bundle_dir / bundle.METRICS)
    tests = {v: Baseline("bundle", metrics) for v in logged.versions}
    models = {v: Model.of(card.feature_schema.target, metrics) for v in logged.versions}
    return report.build(
        card.name, logged, found, joined, models, tests, Rule.from_params(p), p.window, width, 0
    )


def test_outcomes_through_the_api_and_through_a_file_give_the_same_metrics(
    trained: Trained, tmp_path: Path
) -> None:
    rows = trained.records()
    truth = trained.schema.target_array(trained.test)
    ids = [f"cust-{i}" for i in range(len(rows))]
    server = start_server(trained.bundle_dir, tmp_path / "server")
    half = len(rows) // 2
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for start in range(0, half, 50):  # half through /v1, an id beside each instance
            chunk = [{**r, "id": i} for r, i in zip(rows, ids, strict=True)][start : start + 50]
            chunk = chunk[: half - start]
            assert http.post("/v1/predict", json={"instances": chunk}).status_code == 200
        metadata = http.get("/v2/models/churn").json()
        for start in range(half, len(rows), 50):  # the other half through V2, ids as a tensor
            chunk, chunk_ids = rows[start : start + 50], ids[start : start + 50]
            tensors = [
                {
                    "name": t["name"],
                    "shape": [len(chunk)],
                    "datatype": t["datatype"],
                    "data": [r[t["name"]] for r in chunk],
                }
                for t in metadata["inputs"]
            ]
            tensors.append(
                {"name": "id", "shape": [len(chunk)], "datatype": "BYTES", "data": chunk_ids}
            )
            infer = http.post("/v2/models/churn/infer", json={"inputs": tensors})
            assert infer.status_code == 200, infer.text
        # Outcomes for five of every six answered instances, and two for ids nobody was sent.
        known = [
            outcome(i, int(y), LATER + timedelta(minutes=k))
            for k, (i, y) in enumerate(zip(ids, truth, strict=True))
            if k % 6
        ] + [outcome("nobody-1", 1), outcome("nobody-2", 0)]
        for start in range(0, len(known), 100):
            sent = http.post("/v1/feedback", json={"outcomes": known[start : start + 100]})
            assert sent.status_code == 200 and sent.json()["accepted"] == len(
                known[start : start + 100]
            )
    assert server.stop() == 0
    outcomes_csv = tmp_path / "outcomes.csv"
    with outcomes_csv.open("w", newline="") as out:
        writer = csv.DictWriter(out, ["id", "label", "observed_at"])
        writer.writeheader()
        writer.writerows(known)

    through_api = _judged(trained, server.log_dir, server.log_dir)
    through_file = _judged(trained, server.log_dir, outcomes_csv)
    assert through_api.versions == through_file.versions
    assert through_api.outcomes.joined == through_file.outcomes.joined == len(known) - 2
    assert through_api.outcomes.unknown_id == through_file.outcomes.unknown_id
    assert through_api.outcomes.unknown_id.examples == ["nobody-1", "nobody-2"]
    [version] = through_api.versions.values()
    [window] = [w for w in version.windows if w.labels]
    assert window.labels == len(known) - 2 and window.predictions == len(rows)
    # The joined truth is the truth: the metrics equal scoring the labelled rows directly.
    labelled = np.arange(len(rows)) % 6 != 0
    expected = classification_metrics(truth[labelled], trained.expected()[labelled], [0, 1], 1, 0.5)
    assert window.metrics["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-12)
