"""A Service in; its HTTP routes out: typed handlers, and the one table that turns an exception into
a status code (and, under /v2, into the Open Inference Protocol's `{"error": ...}`). How a body
gets to a handler (admission, routing, timeout, decompression, decoding) is serve/inbound.py.

Handlers are thin: they take and return the contract's msgspec Structs, and Litestar encodes the
answers and lays out the OpenAPI document from these very signatures (serve/openapi.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ServiceUnavailableException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from modelops.errors import ArtifactIntegrityError, DataValidationError, ModelopsError
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
from modelops.serve.inbound import JSON, Inbound, PayloadTooLarge, PredictBody, admit, require_json
from modelops.serve.metrics import MEDIA_TYPE
from modelops.serve.v2 import TensorInvalid, V2Error

if TYPE_CHECKING:
    from typing import TypeAlias

    from modelops.serve.app import Service

    # Built from the model's classes at startup; Litestar resolves the name from the handler's
    # signature namespace.
    PredictResponse: TypeAlias = msgspec.Struct
    Version: TypeAlias = str | None

log = logging.getLogger(logs.SERVER)
_encoder = msgspec.json.Encoder()


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
    return [*_body_handlers(service, namespace), *_read_handlers(service, namespace)]


def _body_handlers(service: Service, namespace: dict[str, Any]) -> list[HTTPRouteHandler]:
    """The routes that take a body the contract decodes: predict and feedback."""

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

    return [predict, feedback]


def _read_handlers(service: Service, namespace: dict[str, Any]) -> list[HTTPRouteHandler]:
    """The model card, live drift, health and metrics."""

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

    routes = [model, drift, live, ready, metrics]
    if service.primary.live_drift is None:
        routes.remove(drift)
    return routes


def unknown(what: str, served: str) -> UnknownModel:
    return UnknownModel(detail=f"{what} is not served here; {served}")
