"""A request with a body on its way in, before its handler runs: refused early when it is not JSON
or no model can answer it (`admit`); routed to the model that will answer it, its arrival told to
that model's batcher, its body given `body_timeout_seconds` to arrive whole (`Inbound`); its bytes
decompressed as Content-Encoding says (`inflate`) and decoded by the contract in one msgspec pass
(`PredictBody`: /v1's predict and feedback bodies, and V2's infer requests).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from litestar import Request
from litestar.dto import AbstractDTO
from litestar.exceptions import ClientException, ServiceUnavailableException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.typing import FieldDefinition

from modelops.errors import DataIssue, DataValidationError
from modelops.serve.contract import Decoded

if TYPE_CHECKING:
    from modelops.serve.app import Service
    from modelops.serve.models import ServedModel

JSON = "application/json"


class UnsupportedMediaType(ClientException):
    status_code = 415


class RequestTimeout(ClientException):
    status_code = 408


class PayloadTooLarge(ClientException):
    status_code = 413


class PredictBody(AbstractDTO[Any]):
    """A predict request body (/v1's, or an Open Inference Protocol infer request), decoded by the
    service's contract in one msgspec pass (every problem listed) rather than by Litestar's generic
    decoding; documented as the request type."""

    service: ClassVar[Service]
    request_type: ClassVar[type[msgspec.Struct]]
    decoder: ClassVar[staticmethod[[bytes], Any]]

    @classmethod
    def bound_to(
        cls,
        service: Service,
        request_type: type[msgspec.Struct] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> type[PredictBody]:
        attrs = {
            "service": service,
            "request_type": request_type or service.contract.request_type,
            "decoder": staticmethod(decode or service.decode),
        }
        return type("PredictBody", (cls,), attrs)

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        """Nothing to derive from the handler's annotation: the contract decodes the body."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.request_type)
        )

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Any:
        return iter(())

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    def decode_bytes(self, value: bytes) -> Decoded:
        encoding = self.asgi_connection.headers.get("content-encoding")
        if encoding is not None:
            value = inflate(value, encoding, self.service.config.max_body_bytes)
        return self.decoder(value)

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        raise UnsupportedMediaType(detail="send the body as Content-Type: application/json (UTF-8)")


class Inbound(ASGIMiddleware):
    """A predict request from the moment it enters the route: it is routed to the model that will
    answer it (the primary, a canary on its share, or the version a V2 path names), that model's
    batcher learns it is on its way (so requests whose bodies are still being read can share the
    next model call); a body that has not arrived whole within `body_timeout_seconds` gets a 408 (a
    stalled client does not hold a connection forever); and a client that hangs up before its body
    is complete is a client error, not a server one."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.timeout = service.config.body_timeout_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        body = _Body(receive, self.timeout)
        try:
            model = self._model(scope)
            state = scope["state"]
            state["model"] = model
            state["model_version"] = model.header
            batcher = model.batcher
            if batcher is None:
                await next_app(scope, body, send)
                return
            with batcher.arrival() as arrival:
                scope["state"]["arrival"] = arrival
                await next_app(scope, body, send)
        finally:
            body.timer.cancel()

    def _model(self, scope: Scope) -> ServedModel:
        service = self.service
        version = scope["path_params"].get("version")
        if (
            version is not None
        ):  # a V2 path naming a version (unknown ones get a 404 before reading)
            return service.answering.get(version, service.primary)
        if service.router is None:
            return service.primary
        key = None
        for name, value in scope["headers"]:
            if name == b"x-routing-key":
                key = value
                break
        return service.route(key, scope["state"]["request_id"])


class _Body:
    """`receive` for one request's body: the whole body within `seconds`, and a client that leaves
    mid-body refused. One timer per request (an asyncio.timeout around every receive cost several
    times more); when it fires while the body is awaited it interrupts that wait."""

    __slots__ = ("_receive", "_task", "_waiting", "expired", "timer")

    def __init__(self, receive: Receive, seconds: float) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._waiting = False
        self.expired = False
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    async def __call__(self) -> Any:
        if self.expired:
            raise RequestTimeout(detail="the body did not arrive in time")
        self._waiting = True
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if self.expired and self._task is not None:
                self._task.uncancel()
                raise RequestTimeout(detail="the body did not arrive in time") from None
            raise
        finally:
            self._waiting = False
        if message["type"] == "http.disconnect":
            raise ClientException(detail="the client disconnected before the body was complete")
        if not message.get("more_body", False):
            self.timer.cancel()
        return message


def admit(service: Service, require: Callable[[str | None], None] | None = None) -> Any:
    async def admit(request: Request[Any, Any, Any]) -> None:
        """Refuse before the body is read: a non-JSON body, or no model to score it."""
        (require or require_json)(request.headers.get("content-type"))
        if not service.ready():
            raise ServiceUnavailableException(detail=service.not_ready())

    return admit


CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The body a Content-Encoding names, decompressed to at most `limit` bytes; identity passes."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in CODINGS:
        raise UnsupportedMediaType(
            detail=f"Content-Encoding {coding[:40]!r} is not supported; send identity, gzip or deflate"
        )
    inflater = zlib.decompressobj(CODINGS[coding])
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise DataValidationError(
            "request body", [DataIssue("$", f"not valid {coding} data (Content-Encoding)", 0)]
        ) from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(detail=f"the decompressed body is larger than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise DataValidationError(
            "request body",
            [DataIssue("$", f"not one complete {coding} stream (truncated, or data after it)", 0)],
        )
    return data


def require_json(content_type: str | None) -> None:
    if content_type == JSON:
        return
    media, _, params = (content_type or "").partition(";")
    charset = next(
        (
            v.strip().strip('"').lower()
            for k, _, v in (p.partition("=") for p in params.split(";"))
            if k.strip().lower() == "charset"
        ),
        "utf-8",
    )
    if media.strip().lower() != JSON or charset != "utf-8":
        raise UnsupportedMediaType(detail="send the body as Content-Type: application/json (UTF-8)")
