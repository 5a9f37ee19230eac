"""A Service in; its HTTP routes out: typed handlers, the predict body's decoder, the routing of
each predict request to the model that answers it, and the one table that turns an exception into a
status code (and, under /v2, into the Open Inference Protocol's `{"error": ...}`).

Handlers are thin: they take and return the contract's msgspec Structs, and Litestar encodes the
answers and lays out the OpenAPI document from these very signatures (serve/openapi.py).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import msgspec
from litestar import Request, Response, get, post
from litestar.dto import AbstractDTO
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    ServiceUnavailableException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, QueryParameter
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.typing import FieldDefinition

from modelops.errors import ArtifactIntegrityError, DataIssue, DataValidationError, ModelopsError
from modelops.logline import Outcome
from modelops.serve import logs
from modelops.serve.config import ServeConfig
from modelops.serve.contract import (
    Decoded,
    DriftSnapshot,
    ErrorResponse,
    FeedbackReceipt,
    FieldError,
    Health,
    ModelDescription,
)
from modelops.serve.metrics import MEDIA_TYPE
from modelops.serve.v2 import TensorInvalid, V2Error

if TYPE_CHECKING:
    from typing import TypeAlias

    from modelops.serve.app import Service
    from modelops.serve.models import ServedModel

    # Built from the model's classes at startup; Litestar resolves the name from the handler's
    # signature namespace.
    PredictResponse: TypeAlias = msgspec.Struct
    Version: TypeAlias = str | None

JSON = "application/json"
log = logging.getLogger(logs.SERVER)
_encoder = msgspec.json.Encoder()


class UnsupportedMediaType(ClientException):
    status_code = 415


class RequestTimeout(ClientException):
    status_code = 408


class PayloadTooLarge(ClientException):
    status_code = 413


class UnknownModel(NotFoundException):
    """A model name or version this server does not serve (the message says which it does)."""


V2_PREFIX = "/v2"


# --------------------------------------------------------------------------- errors -> status codes

# The one place an exception becomes a status code; first match wins. None: the exception's own
# status (Litestar's HTTP exceptions: 404, 405, 413, 415, 503, ...).
STATUS_FOR: tuple[tuple[type[Exception], int | None], ...] = (
    (DataValidationError, 400),
    (HTTPException, None),
    (ArtifactIntegrityError, 503),
    (ModelopsError, 500),
    (Exception, 500),
)


def status_of(exc: Exception) -> int:
    for kind, status in STATUS_FOR:
        if isinstance(exc, kind):
            return status if status is not None else int(getattr(exc, "status_code", 500))
    return 500


def _problems(exc: Exception, status: int, config: ServeConfig) -> list[FieldError]:
    """What went wrong, by path; built from our own words, never from the request's values."""
    if isinstance(exc, DataValidationError):
        return [FieldError(i.column, f"{i.kind} {i.detail}".strip()) for i in exc.issues]
    if isinstance(exc, UnknownModel):
        return [FieldError("$", exc.detail)]
    if status == 404:
        return [FieldError("$", "no such endpoint; the API is described at /schema")]
    if status == 405:
        return [FieldError("$", "method not allowed on this endpoint (see the Allow header)")]
    if status == 413 and not isinstance(exc, PayloadTooLarge):
        return [FieldError("$", f"body larger than the limit of {config.max_body_bytes} bytes")]
    if status == 408:
        return [
            FieldError("$", f"the body did not arrive within {config.body_timeout_seconds:g} s")
        ]
    if status < 500 or isinstance(exc, ServiceUnavailableException | ArtifactIntegrityError):
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return [FieldError("$", detail)]
    return [FieldError("$", "internal error; the server log has the details under this request_id")]


def error_handler(config: ServeConfig) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        status = status_of(exc)
        request_id = request.scope.get("state", {}).get("request_id", "")
        if status >= 500 and not isinstance(exc, ServiceUnavailableException):
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"fields": {"request_id": request_id, "path": request.url.path}},
            )
        headers = getattr(exc, "headers", None) or {}
        problems = _problems(exc, status, config)
        body: msgspec.Struct = ErrorResponse(status, problems, request_id)
        if request.url.path.startswith(V2_PREFIX):
            body = V2Error(v2_text(exc, problems))
        return Response(_encoder.encode(body), status_code=status, media_type=JSON, headers=headers)

    return handle


def v2_text(exc: Exception, problems: list[FieldError]) -> str:
    """The Open Inference Protocol's one error string: every problem, each naming where it is."""
    if isinstance(exc, TensorInvalid):
        return exc.text()
    return "; ".join(p.message if p.field == "$" else f"{p.field}: {p.message}" for p in problems)


def error_responses(
    *statuses: tuple[int, str], body: type[msgspec.Struct] = ErrorResponse
) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(body, description=text, generate_examples=False)
        for status, text in statuses
    }


# --------------------------------------------------------------------------- the predict body


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


# --------------------------------------------------------------------------- the routes


def handlers(service: Service) -> list[HTTPRouteHandler]:
    """Every /v1, health and metrics route of the service; /v1/drift only when live drift is on."""
    namespace = {
        "PredictResponse": service.contract.response_type,
        "Version": Annotated[
            str | None,
            QueryParameter(description="a served model's version (default: the primary's)"),
        ],
    }

    @post(
        "/v1/predict",
        status_code=200,
        dto=PredictBody.bound_to(service),
        return_dto=None,
        before_request=admit(service),
        middleware=[Inbound(service)],
        signature_namespace=namespace,
        operation_id="predict",
        summary="Score 1 to max_instances instances",
        response_description="one prediction per instance, in order",
        responses=error_responses(
            (400, "the request breaks the contract; every problem by path"),
            (413, "the body is larger than the configured limit"),
            (415, "the body is not application/json"),
            (503, "the model is not loaded and verified yet"),
        ),
    )
    async def predict(data: JSONBody[Decoded], request: Request[Any, Any, Any]) -> PredictResponse:
        return await service.predict(data, request.scope["state"])

    async def json_only(request: Request[Any, Any, Any]) -> None:
        require_json(request.headers.get("content-type"))

    @post(
        "/v1/feedback",
        status_code=200,
        dto=PredictBody.bound_to(service, service.contract.feedback_type, service.decode_feedback),
        return_dto=None,
        before_request=json_only,
        operation_id="feedback",
        summary="Report the outcomes of answered instances, by the ids they were sent with",
        response_description="how many outcomes the feedback log took",
        responses=error_responses(
            (400, "the request breaks the contract (a label outside the classes, ...)"),
            (413, "the body is larger than the configured limit"),
            (415, "the body is not application/json"),
            (503, "the feedback log cannot be written now"),
        ),
    )
    async def feedback(
        data: JSONBody[list[Outcome]], request: Request[Any, Any, Any]
    ) -> FeedbackReceipt:
        return await service.feedback(data, request.scope["state"]["request_id"])

    @get(
        "/v1/model",
        summary="The model card (the primary's, or the served version named)",
        response_description="the card",
        responses=error_responses((404, "no served model has that version")),
        signature_namespace=namespace,
    )
    async def model(version: Version = None) -> ModelDescription:
        return service.served(version).describe()

    @get(
        "/v1/drift",
        summary="Drift of the last rows a model scored against its training profile",
        response_description="the live window's drift report (the primary's, or the version named)",
        responses=error_responses((404, "no served model has that version")),
        signature_namespace=namespace,
    )
    async def drift(version: Version = None) -> DriftSnapshot:
        window = service.served(version).live_drift
        assert window is not None  # the route exists only when live drift is on
        report, capacity = window.merged()
        return DriftSnapshot(capacity, report)

    @get("/health/live", summary="Liveness", response_description="the process answers")
    async def live() -> Health:
        return Health("live")

    @get(
        "/health/ready",
        summary="Readiness",
        response_description="every model loaded and verified",
        responses={503: ResponseSpec(Health, description="loading, or failed verification")},
    )
    async def ready() -> Response[Health]:
        health = service.health()
        return Response(health, status_code=200 if health.status == "ready" else 503)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        response_description="text exposition format",
        media_type=MEDIA_TYPE,
    )
    async def metrics() -> bytes:
        return service.exposition()

    routes = [predict, feedback, model, drift, live, ready, metrics]
    if service.primary.live_drift is None:
        routes.remove(drift)
    return routes


def unknown(what: str, served: str) -> UnknownModel:
    return UnknownModel(detail=f"{what} is not served here; {served}")
