"""HTTP at its edges, through a real uvicorn process: HEAD, compressed bodies, clients that stall
mid-body, bodies over the limit, and text that is not text."""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Server, Trained, start_server

LIMIT = 65536


@pytest.fixture(scope="module")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        trained.bundle_dir,
        tmp_path_factory.mktemp("edges"),
        "--max-body-bytes",
        str(LIMIT),
        "--body-timeout-seconds",
        "1",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def body(trained: Trained, rows: int = 3) -> bytes:
    return json.dumps({"instances": trained.records()[:rows]}).encode()


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/v1/model", "/metrics"])
def test_head_answers_like_get_without_a_body(http: httpx.Client, path: str) -> None:
    get, head = http.get(path), http.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["x-model-version"] == "v1.0.0"
    if path != "/metrics":  # the exposition changes between two scrapes
        assert head.headers["content-length"] == str(len(get.content))


@pytest.mark.parametrize("encode", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
def test_a_compressed_body_is_decoded(http: httpx.Client, trained: Trained, encode: object) -> None:
    plain = http.post("/v1/predict", content=body(trained), headers=JSON)
    coding = "gzip" if encode is gzip.compress else "deflate"
    packed = http.post(
        "/v1/predict",
        content=encode(body(trained)),  # type: ignore[operator]
        headers={**JSON, "Content-Encoding": coding},
    )
    assert packed.status_code == 200, packed.text
    assert packed.json()["predictions"] == plain.json()["predictions"]


@pytest.mark.parametrize(
    ("coding", "payload", "status", "message"),
    [
        ("deflate", None, 400, "not valid deflate data (Content-Encoding)"),
        ("gzip", None, 400, "not valid gzip data (Content-Encoding)"),
        ("br", None, 415, "Content-Encoding 'br' is not supported"),
        ("gzip", gzip.compress(b" " * (LIMIT * 50)), 413, "decompressed body is larger"),
    ],
)
def test_a_body_that_is_not_what_its_encoding_says_is_refused(
    http: httpx.Client,
    trained: Trained,
    coding: str,
    payload: bytes | None,
    status: int,
    message: str,
) -> None:
    r = http.post(
        "/v1/predict",
        content=payload if payload is not None else body(trained),  # plain bytes, not encoded
        headers={**JSON, "Content-Encoding": coding},
    )
    assert r.status_code == status
    assert message in r.json()["errors"][0]["message"]


def test_a_lone_surrogate_is_called_what_it_is(http: httpx.Client, trained: Trained) -> None:
    record = trained.records()[0]
    text = json.dumps({"instances": [record]}).encode()
    text = text.replace(json.dumps(record["region"]).encode(), b'"\\ud800"', 1)
    r = http.post("/v1/predict", content=text, headers=JSON)
    assert r.status_code == 400
    assert "lone surrogate" in r.json()["errors"][0]["message"]


def test_clients_that_stall_mid_body_get_408_and_lose_their_connection(
    server: Server, trained: Trained
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(50):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + body(trained)[:10]
        )
        stalled.append(s)
    started = time.monotonic()
    for s in stalled:
        answer = read_until_closed(s)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive within 1 s" in answer
        s.close()
    assert time.monotonic() - started < 20


def test_a_413_is_read_by_a_client_still_sending_its_body(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    oversized = b'{"instances": [' + b" " * (LIMIT * 8) + b"]}"
    for declared in (True, False):  # Content-Length over the limit, or chunked past it
        s = socket.create_connection((host, int(port)), timeout=30)
        head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        if declared:
            s.sendall(head + f"Content-Length: {len(oversized)}\r\n\r\n".encode())
            s.sendall(oversized)
        else:
            s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(oversized), 8192):
                chunk = oversized[i : i + 8192]
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        answer = read_until_closed(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"body larger than the limit" in answer


JSON = {"Content-Type": "application/json"}


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s of silence)."""
    s.settimeout(10)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk
        if b"\r\n\r\n" in data and _complete(data):
            return data


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":", 1)[1])
    return False


def test_a_client_waiting_for_100_continue_gets_its_413_without_sending(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: 100000000\r\n\r\n"
    )
    answer = read_until_closed(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # no "100 Continue" first
