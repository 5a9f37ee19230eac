"""Every HTTP request in; its response out with X-Model-Version (the version of the model that
answered it: the primary's, unless a route put another in the request's state) and X-Request-ID
added, counted in the request metrics and written as one access line.

`RequestObserver` is the outermost ASGI layer around the Litestar app, so it sees every response:
the routes' own, their errors (400, 413, 415, 503) and what Litestar's router answers before any
route runs (404 for an unknown path, 405 for a method a path does not take). A Litestar middleware
runs inside the router and would miss those.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import time
from typing import Any

import msgspec
from litestar import Litestar

from modelops.serve import logs
from modelops.serve.contract import ErrorResponse, FieldError
from modelops.serve.tallies import Tallies

OTHER = "other"  # unmatched paths share one label, so scanners cannot blow up the series count
DISCARD_BYTES = 64 << 20  # of a refused body read and dropped so its 413 reaches the client
DISCARD_SECONDS = 5.0
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# A request's own id, when the client sent none: 64 random bits per process, then a counter (as
# unique as a uuid4 in practice, at a fraction of its cost per request).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def request_id_from(scope: dict[str, Any]) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id" and _REQUEST_ID.match(value):
            return str(value.decode("ascii"))
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class RequestObserver:
    """The outermost ASGI layer: the Litestar app behind it, every request observed."""

    def __init__(
        self, app: Litestar, tallies: Tallies, version: str, access: logs.AccessLog
    ) -> None:
        self.app = app
        self.state = app.state
        # The app's routes, as templates (/v2/models/{name}/infer); any other path is OTHER.
        self.endpoints = frozenset(route.path_format for route in app.routes)
        self.tallies = tallies
        self.version = version.encode()
        self.access = access
        self.cut_off = 0  # requests the server stopped before they were answered

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]
        if method == "HEAD":
            # A GET without its body: uvicorn sends the headers (Content-Length included) only.
            scope = {**scope, "method": "GET"}
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        def added() -> list[tuple[bytes, bytes]]:
            version = state.get("model_version", self.version)
            return [(b"x-model-version", version), (b"x-request-id", request_id.encode())]

        async def send_with_headers(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                state["response_started"] = True
                status = message["status"]
                if status == 413 and not _expects_continue(scope):
                    await _discard_body(receive)
                message = {**message, "headers": [*message.get("headers", ()), *added()]}
            await send(message)

        self.tallies.in_flight += 1
        try:
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # The server is stopping without waiting for this request (a second Ctrl-C, or the
            # graceful timeout ran out). It was not answered: say so, rather than a 500.
            self.cut_off += 1
            if status == 500 and not started(scope):
                status = 503
                await _send_stopping(send, added(), request_id)
        finally:
            self.tallies.in_flight -= 1
            seconds = time.perf_counter() - start
            path = scope["path"]
            # The route's template once routed; a 405 is never routed, its path may be a route.
            template = scope.get("path_template") or path
            endpoint = template if template in self.endpoints else OTHER
            self.tallies.request(endpoint, method, status, seconds)
            if self.access.enabled:
                client = scope.get("client")
                self.access.write(
                    request_id=request_id,
                    method=method,
                    path=path[:200],
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    model_version=state.get("model_version", self.version).decode(),
                    instances=state.get("instances"),
                    client=client[0] if client else None,
                )


async def _discard_body(receive: Any) -> None:
    """Read what is left of a refused body (up to DISCARD_BYTES, for DISCARD_SECONDS) before the 413
    goes out: a server that closes a connection with unread data resets it, and the client, still
    sending, never reads the answer."""
    left = DISCARD_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DISCARD_SECONDS):
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _expects_continue(scope: Any) -> bool:
    """A client that asked to send its body only after a go-ahead is not sending it: nothing to
    read (and reading would make uvicorn send that go-ahead)."""
    return any(k == b"expect" and v.lower() == b"100-continue" for k, v in scope["headers"])


def started(scope: Any) -> bool:
    return bool(scope["state"].get("response_started"))


_STOPPED = [FieldError("$", "the server stopped before answering; retry")]


async def _send_stopping(send: Any, headers: list[tuple[bytes, bytes]], request_id: str) -> None:
    body = msgspec.json.encode(ErrorResponse(503, _STOPPED, request_id))
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
    except (OSError, RuntimeError):
        # The client hung up, or the server closed the connection first: nobody to tell.
        return
