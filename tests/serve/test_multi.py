"""Several versions of one model in one server: shadows scoring every request off the response path,
canaries answering a sticky, hashed share that changes without a restart, and every model verified
like the primary (a model with another contract is refused, a failing one fails readiness)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest

from modelops import files
from modelops.errors import ArtifactIntegrityError, SchemaError
from modelops.registry import bundle
from modelops.serve.app import create_app
from modelops.serve.config import ServeConfig

from .conftest import (
    Trained,
    params,
    post,
    read_log,
    serve_client,
    source,
    start_server,
    train_bundle,
    trusting,
    wait_ready,
)
from .test_app import metric
from .test_faults import Load, assert_every_200_logged

TOL = 1e-9
TOKEN = "s3cret-admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def probabilities(response: httpx.Response) -> np.ndarray:
    return np.array([list(p["probabilities"].values()) for p in response.json()["predictions"]])


def eventually(get: Any, until: Any, timeout: float = 30) -> Any:
    """`get()` once `until` holds for it (the shadow works off the response path)."""
    deadline = time.monotonic() + timeout
    while not until(value := get()):
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)
    return value


# --------------------------------------------------------------------------- shadow


def test_a_shadow_scores_and_logs_every_request_while_the_answers_stay_the_primarys(
    trained: Trained, trained_fallback: Trained, tmp_path: Path
) -> None:
    config = ServeConfig(log_dir=str(tmp_path / "log"), shadow=(source(trained_fallback),))
    records = trained.records()[:400]
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        responses = [
            post(c, {"instances": records[i : i + 25]}, headers={"X-Request-ID": f"r{i}"})
            for i in range(0, 400, 25)
        ]
        assert {r.status_code for r in responses} == {200}
        assert {r.headers["x-model-version"] for r in responses} == {"v1.0.0"}
        assert {r.json()["model"]["version"] for r in responses} == {"v1.0.0"}
        got = np.vstack([probabilities(r) for r in responses])
        np.testing.assert_allclose(got, trained.expected()[:400], rtol=0, atol=TOL)
        shadow = {"version": "v0.9.0"}
        text = eventually(
            lambda: c.get("/metrics").text,
            lambda t: metric(t, "modelops_shadow_rows_total", **shadow) == 400,
        )
        drift = eventually(
            lambda: c.get("/v1/drift", params={"version": "v0.9.0"}).json(),
            lambda d: d["report"]["rows"] == 400,
        )
        assert c.get("/v1/drift").json()["report"]["rows"] == 400  # the primary's own window
        assert c.get("/v1/drift", params={"version": "v9"}).status_code == 404
    # What the metrics say is what the two models answered, row by row.
    mine, theirs = trained.expected()[:400], trained_fallback.expected(trained.test)[:400]
    answered_labels = [p["label"] for r in responses for p in r.json()["predictions"]]
    lines = read_log(tmp_path / "log")
    marked = [x for x in lines if "role" in x]
    assert {x["role"] for x in marked} == {"shadow"} and len(marked) == 400
    assert {x["model"]["version"] for x in marked} == {"v0.9.0"}
    primary = [x for x in lines if "role" not in x]
    assert [x["inputs"] for x in primary] == records  # single-model lines, unchanged
    by_request: dict[str, list[dict[str, Any]]] = {}
    for x in (x for x in lines if x.get("role") == "shadow"):
        by_request.setdefault(x["request_id"], []).append(x)
    logged = [x for i in range(0, 400, 25) for x in by_request[f"r{i}"]]
    assert [x["inputs"] for x in logged] == records
    logged_p = np.array([list(x["output"]["probabilities"].values()) for x in logged])
    np.testing.assert_allclose(logged_p, theirs, rtol=0, atol=TOL)
    agree = sum(x["output"]["label"] == y for x, y in zip(logged, answered_labels, strict=True))
    assert metric(text, "modelops_shadow_agreement_total", **shadow) == agree
    assert 0 < agree < 400  # two different models: they mostly, not always, agree
    assert metric(text, "modelops_shadow_abs_diff_count", **shadow) == 400
    diff = np.abs(mine - theirs).mean(axis=1)
    assert metric(text, "modelops_shadow_abs_diff_sum", **shadow) == pytest.approx(diff.sum())
    small = {**shadow, "le": "0.01"}
    assert metric(text, "modelops_shadow_abs_diff_bucket", **small) == (diff <= 0.01).sum()
    assert drift["window"] > 0 and drift["report"]["model"]["name"] == "churn"
    info = {"name": "churn", "sha256": bundle_sha(trained_fallback), "role": "shadow", **shadow}
    assert metric(text, "modelops_model_info", **info) == 1
    assert metric(text, "modelops_shadow_lost_rows_total", **shadow, reason="backlog") == 0


def bundle_sha(trained: Trained) -> str:
    return str(files.read_json(trained.bundle_dir / bundle.CARD)["artifact"]["sha256"])


# --------------------------------------------------------------------------- canary


class Answer(NamedTuple):
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> Answer:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
    body = await reader.readexactly(int(headers["content-length"]))
    return Answer(int(status_line.split()[1]), headers, body)


def post_many(
    url: str, requests: list[tuple[dict[str, str], Any]], clients: int = 16
) -> list[Answer]:
    """POST /v1/predict requests over `clients` keep-alive connections: plain HTTP/1.1 on asyncio
    streams, so that 10,000 requests take seconds (httpx's Python client managed ~250 a second
    here, next to the server on the same two cores)."""
    host, port = url.removeprefix("http://").split(":")

    def encode(headers: dict[str, str], body: Any) -> bytes:
        data = json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (
            f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra}\r\n"
        ).encode() + data

    encoded = [encode(h, b) for h, b in requests]
    answers: list[Answer | None] = [None] * len(encoded)

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in range(k, len(encoded), clients):
                answers[i] = await _exchange(reader, writer, encoded[i])
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(client(k) for k in range(clients)))

    asyncio.run(run())
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def test_a_canary_answers_its_share_of_10000_requests_sticky_per_routing_key(
    trained: Trained, trained_next: Trained, tmp_path: Path
) -> None:
    share, n = 0.2, 10_000
    server = start_server(trained.bundle_dir, tmp_path, "--canary", f"{source(trained_next)}:20%")
    records = trained.records()
    try:
        bodies = [
            ({"X-Request-ID": f"req-{i}"}, {"instances": [records[i % len(records)]]})
            for i in range(n)
        ]
        responses = post_many(server.url, bodies)
        keys = [f"customer-{k}" for k in range(200)]
        keyed = post_many(
            server.url, [({"X-Routing-Key": k}, {"instances": records[:1]}) for k in keys * 5]
        )
        text = httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    assert {r.status_code for r in responses} == {200}
    versions = Counter(r.headers["x-model-version"] for r in responses)
    assert set(versions) == {"v1.0.0", "v1.1.0"}
    # Within binomial noise: 4.5 standard deviations of the count at p = 0.2.
    assert abs(versions["v1.1.0"] - share * n) <= 4.5 * math.sqrt(n * share * (1 - share)), versions
    for r in responses:  # the body says who answered, as the header does
        assert r.json()["model"]["version"] == r.headers["x-model-version"]
    # Sticky: a routing key gets the same model every time, whatever the request id.
    per_key: dict[str, set[str]] = {}
    for k, r in zip(keys * 5, keyed, strict=True):
        per_key.setdefault(k, set()).add(r.headers["x-model-version"])
    assert all(len(v) == 1 for v in per_key.values())
    on_canary = sum(1 for v in per_key.values() if v == {"v1.1.0"})
    assert abs(on_canary - 40) <= 4.5 * math.sqrt(200 * share * (1 - share))
    # Metrics and the log split by the answering version, with the canary's rows marked.
    for version in ("v1.0.0", "v1.1.0"):
        counted = sum(
            metric(text, "modelops_predictions_total", version=version, label=label)
            for label in ("0", "1")
        )
        assert counted == versions[version] + sum(
            1 for r in keyed if r.headers["x-model-version"] == version
        )
    lines = {x["request_id"]: x for x in read_log(server.log_dir)}
    for i, r in enumerate(responses[:2000]):
        line = lines[f"req-{i}"]
        assert line["model"]["version"] == r.headers["x-model-version"]
        assert line.get("role", "primary") == (
            "canary" if r.headers["x-model-version"] == "v1.1.0" else "primary"
        )
        assert line["output"] == r.json()["predictions"][0]


def test_the_canary_share_changes_without_a_restart_behind_the_admin_token(
    trained: Trained, trained_next: Trained, tmp_path: Path
) -> None:
    config = ServeConfig(
        log_dir=str(tmp_path), canary=(f"{source(trained_next)}:0%",), admin_token=TOKEN
    )
    body = {"instances": trained.records()[:1]}
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        assert {post(c, body).headers["x-model-version"] for _ in range(50)} == {"v1.0.0"}
        assert c.get("/admin/canary").status_code == 401
        assert c.get("/admin/canary", headers={"Authorization": "Bearer nope"}).status_code == 401
        wrong = c.put("/admin/canary", json={"shares": {"v1.1.0": 100}})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/admin/canary", headers=AUTH).json() == {
            "shares": {"v1.1.0": 0.0},
            "primary": 100.0,
        }
        changed = c.put("/admin/canary", json={"shares": {"v1.1.0": 100}}, headers=AUTH)
        assert changed.json() == {"shares": {"v1.1.0": 100.0}, "primary": 0.0}
        after = [post(c, body) for _ in range(50)]
        assert {r.headers["x-model-version"] for r in after} == {"v1.1.0"}
        np.testing.assert_allclose(
            probabilities(after[0]), trained_next.expected(trained.test.head(1)), atol=TOL
        )
        unknown = c.put("/admin/canary", json={"shares": {"v9.9.9": 5}}, headers=AUTH)
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["field"] == "$.shares.v9.9.9"
        too_much = c.put("/admin/canary", json={"shares": {"v1.1.0": 100.5}}, headers=AUTH)
        assert too_much.status_code == 400
        assert c.get("/admin/canary", headers=AUTH).json()["shares"] == {"v1.1.0": 100.0}
        share = metric(c.get("/metrics").text, "modelops_canary_share_percent", version="v1.1.0")
        assert share == 100


def test_without_an_admin_token_there_is_no_admin_route(trained: Trained, tmp_path: Path) -> None:
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path))) as c:
        assert c.get("/admin/canary", headers=AUTH).status_code == 404
        assert c.put("/admin/canary", json={"shares": {}}, headers=AUTH).status_code == 404
        assert "/admin/canary" not in c.get("/schema/openapi.json").json()["paths"]


def test_a_share_change_reaches_every_worker_without_a_restart(
    trained: Trained, trained_next: Trained, tmp_path: Path
) -> None:
    server = start_server(
        trained.bundle_dir,
        tmp_path,
        "--workers",
        "2",
        "--canary",
        f"{source(trained_next)}:0%",
        "--admin-token",
        TOKEN,
    )
    records = trained.records()

    def versions_on_fresh_connections(n: int = 40) -> Counter[str]:
        seen: Counter[str] = Counter()
        for i in range(n):  # new connections: the kernel spreads them over the workers
            with httpx.Client(base_url=server.url, timeout=30) as fresh:
                r = fresh.post("/v1/predict", json={"instances": records[i : i + 1]})
                assert r.status_code == 200
                seen[r.headers["x-model-version"]] += 1
        return seen

    try:
        assert versions_on_fresh_connections() == {"v1.0.0": 40}
        with httpx.Client(base_url=server.url, timeout=30) as http:
            put = http.put("/admin/canary", json={"shares": {"v1.1.0": 100}}, headers=AUTH)
            assert put.status_code == 200
        time.sleep(1.2)  # every worker takes the shared file at its next tick (twice a second)
        assert versions_on_fresh_connections() == {"v1.1.0": 40}
        writers = {p.name.split("-")[2] for p in server.log_dir.glob("*.jsonl.open")}
        assert len(writers) == 2, writers  # both workers answered, and both with the canary
        with Load(server.url, records, clients=4) as load:
            load.wait_for(100)
    finally:
        assert server.stop() == 0
    assert_every_200_logged(load, server.log_dir)
    roles = Counter(x.get("role", "primary") for x in read_log(server.log_dir))
    assert roles["canary"] >= 140 and roles["primary"] == 40


# --------------------------------------------------------------------------- verified like the primary


def test_a_model_whose_contract_differs_is_refused_naming_the_difference(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    p = params()
    other = msgspec_replace_drop(p, ["customer_id", "region"])
    fewer = train_bundle(tmp_path_factory.mktemp("other") / "churn", other, "v2.0.0")
    for option in ("shadow", "canary"):
        text = source(fewer) if option == "shadow" else f"{source(fewer)}:5%"
        config = trusting(
            trained.bundle_dir, ServeConfig(log_dir=str(tmp_path), **{option: (text,)})
        )
        with pytest.raises(SchemaError) as info:
            create_app(trained.bundle_dir, config)
        message = str(info.value)
        assert f"{option} v2.0.0" in message and "removed feature 'region'" in message


def msgspec_replace_drop(p: Any, drop: list[str]) -> Any:
    import msgspec

    return msgspec.structs.replace(p, data=msgspec.structs.replace(p.data, drop=drop))


def test_another_model_or_the_same_version_twice_is_refused(
    trained: Trained, tmp_path: Path
) -> None:
    renamed = tmp_path / "renamed"
    shutil.copytree(trained.bundle_dir, renamed)
    card = files.read_json(renamed / bundle.CARD)
    card["name"] = "upsell"
    files.write_json(renamed / bundle.CARD, card)
    bundle.write_manifest(renamed, "upsell", "v3.0.0", "1" * 40, [])
    digest = bundle.manifest_sha256(renamed)
    base = trusting(trained.bundle_dir, ServeConfig(log_dir=str(tmp_path / "log")))
    with pytest.raises(SchemaError, match="is model 'upsell'; the primary is 'churn'"):
        create_app(trained.bundle_dir, replace(base, shadow=(f"{renamed}@{digest}",)))
    with pytest.raises(SchemaError, match=r"version v1\.0\.0 is served already"):
        create_app(trained.bundle_dir, replace(base, shadow=(source(trained),)))
    with pytest.raises(ArtifactIntegrityError, match="is not the trusted"):
        create_app(trained.bundle_dir, replace(base, canary=(f"{renamed}@{'0' * 64}:5%",)))


def replace(config: ServeConfig, **changes: Any) -> ServeConfig:
    import msgspec

    return msgspec.structs.replace(config, **changes)


def test_a_shadow_that_fails_verification_fails_readiness_with_its_name(
    trained: Trained, trained_next: Trained, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained_next.bundle_dir, broken)
    card = files.read_json(broken / bundle.CARD)
    card["reference"]["probabilities"][0][0] += 0.01
    files.write_json(broken / bundle.CARD, card)
    bundle.write_manifest(broken, "churn", "v1.1.0", "1" * 40, [])
    shadow = f"{broken}@{bundle.manifest_sha256(broken)}"
    config = ServeConfig(log_dir=str(tmp_path / "log"), shadow=(shadow,))
    with serve_client(trained.bundle_dir, config) as c:
        health = wait_ready(c)
        assert health["status"] == "failed"
        assert re.search(r"shadow v1\.1\.0: .*differs from the trained one", health["reason"])
        r = post(c, {"instances": trained.records()[:1]})
        assert r.status_code == 503 and "shadow v1.1.0" in r.json()["errors"][0]["message"]
        assert c.get("/v2/health/ready").status_code == 503
        assert metric(c.get("/metrics").text, "modelops_model_ready") == 0


def test_live_drift_is_kept_per_model_and_labelled_by_version(
    trained: Trained, trained_next: Trained, tmp_path: Path
) -> None:
    config = ServeConfig(
        log_dir=str(tmp_path),
        canary=(f"{source(trained_next)}:50%",),
        drift_window=400,
        drift_min_rows=100,
    )
    records = trained.records()
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        answered: Counter[str] = Counter()
        for i in range(300):
            r = post(c, {"instances": records[i : i + 1]})
            answered[r.headers["x-model-version"]] += 1
        rows = {
            v: c.get("/v1/drift", params={"version": v}).json()["report"]["rows"]
            for v in ("v1.0.0", "v1.1.0")
        }
        text = c.get("/metrics").text
        desc = c.get("/v1/model", params={"version": "v1.1.0"}).json()
    assert rows == dict(answered) and min(rows.values()) > 100
    for v in ("v1.0.0", "v1.1.0"):
        assert metric(text, "modelops_drift_window_rows", version=v) == answered[v]
    assert desc["version"] == "v1.1.0" and desc["ready"] is True


def test_a_canary_with_its_features_in_another_order_scores_its_own_order(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The rows a client sends are in the primary's order; a model trained on the same features
    in another order gets them in its own."""
    reordered = train_bundle(
        tmp_path_factory.mktemp("reordered") / "churn", params(), "v1.2.0", reverse=True
    )
    names = reordered.schema.names
    assert names != trained.schema.names and sorted(names) == sorted(trained.schema.names)
    config = ServeConfig(log_dir=str(tmp_path), canary=(f"{source(reordered)}:100%",))
    with serve_client(trained.bundle_dir, config) as c:
        assert wait_ready(c)["status"] == "ready"
        r = post(c, {"instances": trained.records()[:50]})
        assert r.headers["x-model-version"] == "v1.2.0"
        np.testing.assert_allclose(
            probabilities(r), reordered.expected(trained.test.head(50)), rtol=0, atol=TOL
        )


def test_workers_get_every_models_source_through_the_environment(
    trained: Trained, trained_next: Trained
) -> None:
    from modelops.serve import workers

    config = ServeConfig(
        bundle_sha256="a" * 64,
        shadow=(source(trained_next),),
        canary=(f"{source(trained_next)}:5%", f"{source(trained)}:1.5%"),
    )
    env = workers.environment(trained.bundle_dir, config, Path("/tmp/shared"))
    assert env["MODELOPS_SERVE_SHADOW"] == source(trained_next)
    from modelops.serve.config import build

    assert build({}, env).canary == config.canary
    assert json.dumps(env)  # every value is text
