"""The Open Inference Protocol (V2) beside /v1, through a real V2 client nobody here wrote
(tritonclient's InferenceServerClient) against a real uvicorn process: the same probabilities as
/v1, the same validation (errors naming the input and the element, never a 5xx), the same log and
metrics, and a version path answered by that version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .conftest import Server, Trained, source, start_server
from .test_app import metric

TOL = 1e-9
DTYPES = {"BYTES": object, "INT64": np.int64, "FP64": np.float64}


@pytest.fixture(scope="module")
def server(
    trained: Trained, trained_next: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # A canary at 0%: unversioned requests go to the primary, the canary only by its version.
    running = start_server(
        trained.bundle_dir,
        tmp_path_factory.mktemp("v2"),
        "--canary",
        f"{source(trained_next)}:0%",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.url.removeprefix("http://"), connection_timeout=30)
    yield c
    c.close()


def complete_rows(trained: Trained, n: int) -> list[dict[str, Any]]:
    """Rows without a missing value: a numpy tensor has no null for an INT64 feature."""
    return [r for r in trained.records() if None not in r.values()][:n]


def tensors(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> list[triton.InferInput]:
    inputs = []
    for spec in metadata["inputs"]:
        values = np.array([r[spec["name"]] for r in rows], dtype=DTYPES[spec["datatype"]])
        tensor = triton.InferInput(spec["name"], [len(rows)], spec["datatype"])
        inputs.append(tensor.set_data_from_numpy(values, binary_data=False))
    return inputs


def v1(server: Server, rows: list[dict[str, Any]]) -> tuple[np.ndarray, list[Any]]:
    body = httpx.post(f"{server.url}/v1/predict", json={"instances": rows}, timeout=30).json()
    proba = [list(p["probabilities"].values()) for p in body["predictions"]]
    return np.array(proba), [p["label"] for p in body["predictions"]]


def test_a_v2_client_sees_a_live_ready_server_and_the_models_metadata(
    client: triton.InferenceServerClient, trained: Trained
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn") and client.is_model_ready("churn", "v1.1.0")
    assert not client.is_model_ready("upsell")
    assert client.get_server_metadata()["name"] == "modelops"
    metadata = client.get_model_metadata("churn")
    assert metadata["name"] == "churn" and metadata["versions"] == ["v1.0.0", "v1.1.0"]
    assert client.get_model_metadata("churn", "v1.1.0") == metadata
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]}
    assert list(inputs) == trained.schema.names
    assert inputs["tenure_months"] == ("INT64", [-1])
    assert inputs["monthly_charges"] == ("FP64", [-1])
    assert inputs["contract"] == ("BYTES", [-1])
    outputs = {t["name"]: t for t in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 2] and outputs["label"]["datatype"] == "INT64"
    assert json.loads(outputs["probabilities"]["parameters"]["classes"]) == ["0", "1"]
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("upsell")
    assert info.value.status() == "404" and "'upsell' is not served here" in info.value.message()


def test_v2_probabilities_and_labels_equal_v1s(
    client: triton.InferenceServerClient, server: Server, trained: Trained
) -> None:
    rows = complete_rows(trained, 60)
    metadata = client.get_model_metadata("churn")
    requested = [
        triton.InferRequestedOutput("probabilities", binary_data=False),
        triton.InferRequestedOutput("label", binary_data=False),
    ]
    result = client.infer("churn", tensors(rows, metadata), outputs=requested, request_id="v2-a")
    proba, labels = v1(server, rows)
    assert result.as_numpy("probabilities").shape == (60, 2)
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=0, atol=TOL)
    assert result.as_numpy("label").tolist() == labels
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "churn",
        "v1.0.0",
        "v2-a",
    )
    # Without outputs named, both come back (JSON; the binary extension is not used).
    default = client.infer("churn", tensors(rows[:5], metadata))
    np.testing.assert_allclose(default.as_numpy("probabilities"), proba[:5], rtol=0, atol=TOL)
    only_label = client.infer(
        "churn", tensors(rows[:5], metadata), outputs=[requested[1]]
    ).get_response()
    assert [o["name"] for o in only_label["outputs"]] == ["label"]


def raw_tensors(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": spec["name"],
            "shape": [len(rows)],
            "datatype": spec["datatype"],
            "data": [r[spec["name"]] for r in rows],
        }
        for spec in metadata["inputs"]
    ]


def test_nulls_are_missing_values_and_answers_equal_v1_on_every_test_row(
    server: Server, trained: Trained
) -> None:
    rows = trained.records()
    assert any(None in r.values() for r in rows)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        metadata = http.get("/v2/models/churn").json()
        got = []
        for i in range(0, len(rows), 150):
            r = http.post(
                "/v2/models/churn/infer", json={"inputs": raw_tensors(rows[i : i + 150], metadata)}
            )
            assert r.status_code == 200, r.text
            [p] = [o for o in r.json()["outputs"] if o["name"] == "probabilities"]
            got.append(np.array(p["data"]).reshape(p["shape"]))
    np.testing.assert_allclose(np.vstack(got), trained.expected(), rtol=0, atol=TOL)


def test_a_bad_tensor_gets_a_v2_error_naming_it_never_a_5xx(
    client: triton.InferenceServerClient, server: Server, trained: Trained
) -> None:
    rows = complete_rows(trained, 4)
    metadata = client.get_model_metadata("churn")
    inputs = tensors(rows, metadata)
    ages = next(i for i, t in enumerate(metadata["inputs"]) if t["name"] == "age")
    inputs[ages].set_data_from_numpy(np.array([40, 5, 41, 200], dtype=np.int64), binary_data=False)
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", inputs)
    assert info.value.status() == "400"
    assert info.value.message() == (
        "input 'age' element 1: Expected `number` >= 18.0; "
        "input 'age' element 3: Expected `number` <= 120.0"
    )
    inputs[ages].set_data_from_numpy(np.array([40, 41, 42, 43], dtype=np.int64), binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", inputs)
    assert info.value.status() == "415" and "binary tensor data is not supported" in (
        info.value.message()
    )
    good = raw_tensors(rows, metadata)
    broken: list[tuple[Any, str]] = [
        ([t for t in good if t["name"] != "plan"], "input 'plan' is missing"),
        ([*good, good[0]], "input 'tenure_months' is given twice"),
        (
            [{**t, "shape": [3]} if t["name"] == "region" else t for t in good],
            "input 'region' has shape [3] but 4 values",
        ),
        (
            [{**t, "data": t["data"][:3], "shape": [3]} if t["name"] == "age" else t for t in good],
            "input 'age' has 3 values but input 'tenure_months' has 4",
        ),
        (
            [{**t, "datatype": "FP64"} if t["name"] == "contract" else t for t in good],
            "input 'contract': datatype must be BYTES (categorical feature)",
        ),
        (
            [{**t, "data": ["weekly"] * 4} if t["name"] == "contract" else t for t in good],
            "input 'contract' element 0: not one of the known categories",
        ),
        (
            [{**t, "data": [1.5] * 4} if t["name"] == "tenure_months" else t for t in good],
            "input 'tenure_months' element 0: Expected a whole number",
        ),
        (
            [{**t, "data": [None] * 4} if t["name"] == "monthly_charges" else t for t in good],
            "input 'monthly_charges' element 0: Expected `number`, got `null`",
        ),
        ([*good, {**good[0], "name": "SECRET-colour"}], "unknown input 'SECRET-colour'"),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for inputs_json, says in broken:
            r = http.post("/v2/models/churn/infer", json={"inputs": inputs_json})
            assert r.status_code == 400, (says, r.text)
            assert set(r.json()) == {"error"} and says in r.json()["error"], (says, r.text)
        for path, status in (
            ("/v2/models/upsell/infer", 404),
            ("/v2/models/churn/versions/v9/infer", 404),
        ):
            r = http.post(path, json={"inputs": good})
            assert r.status_code == status and "is not served here" in r.json()["error"]
        for body in (b"", b"{", b"[]", b'{"inputs": []}', b'{"inputs": [1]}', b"null", b"\xff"):
            r = http.post("/v2/models/churn/infer", content=body)
            assert r.status_code == 400 and set(r.json()) == {"error"}, (body, r.text)
        r = http.post("/v2/models/churn/infer", content=b"x", headers={"content-type": "text/csv"})
        assert r.status_code == 415 and "error" in r.json()
    text = httpx.get(f"{server.url}/metrics").text
    # (/health/ready answers 503 while the models load: the one 5xx the service gives)
    five = [x for x in text.splitlines() if "requests_total" in x and 'status="5' in x]
    assert [x for x in five if "/health/" not in x] == []
    assert metric(text, "modelops_validation_failures_total", field="age") >= 1


def test_a_version_path_is_answered_and_logged_by_that_version(
    server: Server, trained: Trained, trained_next: Trained
) -> None:
    rows = trained.records()[:20]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        metadata = http.get("/v2/models/churn").json()
        body = {"inputs": raw_tensors(rows, metadata)}
        pinned = http.post(
            "/v2/models/churn/versions/v1.1.0/infer", json=body, headers={"X-Request-ID": "pin-1"}
        )
        routed = http.post(
            "/v2/models/churn/infer", json=body, headers={"X-Request-ID": "v2-routed"}
        )
        text = http.get("/metrics").text
    assert pinned.status_code == routed.status_code == 200
    assert pinned.headers["x-model-version"] == pinned.json()["model_version"] == "v1.1.0"
    assert routed.headers["x-model-version"] == routed.json()["model_version"] == "v1.0.0"
    [p] = [o for o in pinned.json()["outputs"] if o["name"] == "probabilities"]
    np.testing.assert_allclose(
        np.array(p["data"]).reshape(20, 2), trained_next.expected(trained.test.head(20)), atol=TOL
    )
    infer = {"endpoint": "/v2/models/{name}/versions/{version}/infer", "method": "POST"}
    assert metric(text, "modelops_http_requests_total", **infer, status="200") >= 1
    assert (
        sum(
            metric(text, "modelops_predictions_total", version="v1.1.0", label=label)
            for label in ("0", "1")
        )
        >= 20
    )
    lines = logged_lines(server.log_dir, {"pin-1", "v2-routed"})
    pinned_lines = [x for x in lines if x["request_id"] == "pin-1"]
    routed_lines = [x for x in lines if x["request_id"] == "v2-routed"]
    assert len(pinned_lines) == len(routed_lines) == 20
    assert {x["role"] for x in pinned_lines} == {"canary"}
    assert {x["model"]["version"] for x in pinned_lines} == {"v1.1.0"}
    assert all("role" not in x for x in routed_lines)
    # The same lines /v1 writes: the instance as sent, the answer as /v1 would give it.
    assert [x["inputs"] for x in routed_lines] == rows
    assert [x["output"]["label"] for x in routed_lines] == routed.json()["outputs"][1]["data"]


def test_instance_ids_travel_as_an_id_tensor_logged_and_never_scored(
    server: Server, client: triton.InferenceServerClient, trained: Trained
) -> None:
    rows = complete_rows(trained, 6)
    metadata = client.get_model_metadata("churn")
    assert metadata["parameters"]["instance_id_input"] == "id"
    assert "id" not in {t["name"] for t in metadata["inputs"]}  # optional: not a feature
    ids = triton.InferInput("id", [6], "BYTES")
    ids.set_data_from_numpy(np.array([f"acct-{i}" for i in range(6)], dtype=object), False)
    with_ids = client.infer(
        "churn", [*tensors(rows, metadata), ids], headers={"X-Request-ID": "v2-ids"}
    )
    without = client.infer("churn", tensors(rows, metadata), headers={"X-Request-ID": "v2-no-ids"})
    np.testing.assert_array_equal(
        with_ids.as_numpy("probabilities"), without.as_numpy("probabilities")
    )
    lines = logged_lines(server.log_dir, {"v2-ids", "v2-no-ids"})
    assert [x.get("id") for x in lines if x["request_id"] == "v2-ids"] == [
        f"acct-{i}" for i in range(6)
    ]
    assert all("id" not in x for x in lines if x["request_id"] == "v2-no-ids")
    assert all("id" not in x["inputs"] for x in lines)

    bad = {
        "inputs": [
            *raw_tensors(rows[:2], metadata),
            {"name": "id", "shape": [3], "datatype": "INT64", "data": [1, "", None]},
        ]
    }
    refused = httpx.post(f"{server.url}/v2/models/churn/infer", json=bad, timeout=30)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "input 'id': datatype must be BYTES (instance ids)" in error
    assert "input 'id' element 0" in error and "input 'id' element 1" in error


def logged_lines(log_dir: Path, ids: set[str]) -> list[dict[str, Any]]:
    """Lines of the still-open segment too: a row is in the log before its answer is sent."""
    lines = []
    for segment in sorted(log_dir.glob("predictions-*.jsonl*")):
        lines += [json.loads(x) for x in segment.read_bytes().splitlines()]
    assert ids <= {x["request_id"] for x in lines}
    return [x for x in lines if x["request_id"] in ids]


def test_the_v2_routes_are_in_the_openapi_document(server: Server) -> None:
    doc = httpx.get(f"{server.url}/schema/openapi.json").json()
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["responses"]) == {"200", "400", "404", "413", "415", "503"}
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferRequest"
    }
    request = doc["components"]["schemas"]["InferRequest"]
    tensor = request["properties"]["inputs"]["items"]
    assert tensor["discriminator"]["propertyName"] == "name"
    names = [t["name"] for t in httpx.get(f"{server.url}/v2/models/churn").json()["inputs"]]
    assert set(tensor["discriminator"]["mapping"]) == {*names, "id"}  # "id": the instance ids
    [name] = [p for p in infer["parameters"] if p["name"] == "name"]
    assert name["schema"]["enum"] == ["churn"]
