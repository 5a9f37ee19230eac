"""A Service in; its Open Inference Protocol (V2, REST) routes out: health, server and model
metadata, model readiness, and infer, under /v2. They share /v1's contract, validation, routing
(a canary answers its share of unversioned infer requests; a path naming a version is answered by
that version), prediction log and metrics; errors are the protocol's `{"error": "..."}`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter

from modelops.errors import DataIssue, DataValidationError
from modelops.serve.inbound import Inbound, PredictBody, UnsupportedMediaType, admit, require_json
from modelops.serve.routes import error_responses, unknown
from modelops.serve.v2 import (
    BINARY,
    InferResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorInvalid,
    V2Error,
    ValidInfer,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from modelops.serve.app import Service
    from modelops.serve.models import ServedModel

    # Path parameters documented with the served name and versions; resolved by Litestar from the
    # handlers' signature namespace.
    ModelName: TypeAlias = str
    ModelVersion: TypeAlias = str

_BAD = (400, "the request breaks the contract; the error names the input and the element")
_UNKNOWN = (404, "this server serves no model of that name, or not that version")
_TOO_LARGE = (413, "the body is larger than the configured limit")
_MEDIA = (415, "the body is not JSON (binary tensor data is not supported)")
_NOT_READY = (503, "the models are not loaded and verified yet")


def _index(path: str) -> str:
    """`3` of `$.instances[3]`: the element of every input tensor that row came from."""
    return path.rpartition("[")[2].rstrip("]") or path


def _server_version() -> str:
    try:
        return package_version("modelops")
    except PackageNotFoundError:
        return "unknown"


class _Served:
    """What every V2 route asks of the service: which model a path names, or a 404 saying which
    are served; and the path parameters documented with the served name and versions."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.name = service.manifest.name
        self.versions = list(service.answering)
        self.namespace = {
            "ModelName": Annotated[
                str, PathParameter(enum=[self.name], description="the model's name")
            ],
            "ModelVersion": Annotated[
                str,
                PathParameter(enum=self.versions, description="a version that answers requests"),
            ],
        }
        self._admit_body = admit(service, _require_if_sent)

    def model(self, name: str, version: str | None = None) -> ServedModel:
        if name != self.name:
            raise unknown(f"model {name[:64]!r}", f"this server serves {self.name!r}")
        if version is None:
            return self.service.primary
        model = self.service.answering.get(version)
        if model is None:
            raise unknown(
                f"version {version[:64]!r} of {self.name!r}",
                f"versions: {', '.join(self.versions)}",
            )
        return model

    async def admit_infer(self, request: Request[Any, Any, Any]) -> None:
        """Refuse before the body is read: an unknown model, binary tensors, a non-JSON body, or
        no model ready to score it."""
        self.model(request.path_params["name"], request.path_params.get("version"))
        if "inference-header-content-length" in request.headers:
            raise UnsupportedMediaType(detail=BINARY)
        await self._admit_body(request)

    def decode(self, body: bytes) -> ValidInfer:
        try:
            return self.service.protocol.decode(body)
        except DataValidationError as exc:
            self.service.metrics.observe_invalid(exc.issues)
            raise

    async def infer(self, data: ValidInfer, request: Request[Any, Any, Any]) -> InferResponse:
        state = request.scope["state"]
        model: ServedModel = state["model"]
        try:
            answered = await self.service.score(model, data.decoded, state)
        except DataValidationError as exc:  # rows the model cannot score (values too extreme)
            issues = [
                DataIssue(i.column, f"instance {_index(i.column)}: {i.kind}", 0) for i in exc.issues
            ]
            raise TensorInvalid("request body", issues) from None
        request_id = data.id if data.id is not None else answered.request_id
        return self.service.protocol.response(
            model.version, request_id, answered.labels, answered.proba, data.outputs
        )


def _require_if_sent(content_type: str | None) -> None:
    # Clients of the protocol (tritonclient among them) send JSON without saying so.
    if content_type is not None:
        require_json(content_type)


def handlers(service: Service) -> list[HTTPRouteHandler]:
    served = _Served(service)
    return [*_server_handlers(service), *_model_handlers(served), *_infer_handlers(served)]


def _infer_handlers(served: _Served) -> list[HTTPRouteHandler]:
    service = served.service
    options: dict[str, Any] = {
        "status_code": 200,
        "dto": PredictBody.bound_to(service, service.protocol.request_type, served.decode),
        "return_dto": None,
        "before_request": served.admit_infer,
        "middleware": [Inbound(service)],
        "summary": "Score the instances in one input tensor per feature (Open Inference Protocol)",
        "response_description": "the outputs `probabilities` [n, k] and `label` [n]",
        "responses": error_responses(_BAD, _UNKNOWN, _TOO_LARGE, _MEDIA, _NOT_READY, body=V2Error),
        "signature_namespace": served.namespace,
    }

    @post("/v2/models/{name:str}/infer", operation_id="v2_infer", **options)
    async def infer(
        data: JSONBody[ValidInfer], request: Request[Any, Any, Any], name: ModelName
    ) -> InferResponse:
        return await served.infer(data, request)

    @post(
        "/v2/models/{name:str}/versions/{version:str}/infer",
        operation_id="v2_infer_version",
        **options,
    )
    async def infer_version(
        data: JSONBody[ValidInfer],
        request: Request[Any, Any, Any],
        name: ModelName,
        version: ModelVersion,
    ) -> InferResponse:
        return await served.infer(data, request)

    return [infer, infer_version]


def _server_handlers(service: Service) -> list[HTTPRouteHandler]:
    @get("/v2", summary="Server metadata")
    async def server() -> ServerMetadata:
        return ServerMetadata("modelops", _server_version(), [])

    @get("/v2/health/live", summary="Server liveness")
    async def live() -> ServerLive:
        return ServerLive(True)

    @get(
        "/v2/health/ready",
        summary="Server readiness: every model loaded and verified",
        responses={503: ResponseSpec(ServerReady, description="loading, or failed verification")},
    )
    async def ready() -> Response[ServerReady]:
        ok = service.health().status == "ready"
        return Response(ServerReady(ok), status_code=200 if ok else 503)

    return [server, live, ready]


def _model_handlers(served: _Served) -> list[HTTPRouteHandler]:
    service, protocol, namespace = served.service, served.service.protocol, served.namespace
    unknown_model = error_responses(_UNKNOWN, body=V2Error)
    model_ready = {
        **unknown_model,
        503: ResponseSpec(ModelReady, description="not loaded and verified yet"),
    }

    @get(
        "/v2/models/{name:str}",
        summary="Model metadata: inputs, outputs, versions",
        responses=unknown_model,
        signature_namespace=namespace,
    )
    async def metadata(name: ModelName) -> ModelMetadata:
        served.model(name)
        return protocol.metadata(served.versions)

    @get(
        "/v2/models/{name:str}/versions/{version:str}",
        summary="Model metadata of one version",
        responses=unknown_model,
        signature_namespace=namespace,
    )
    async def metadata_version(name: ModelName, version: ModelVersion) -> ModelMetadata:
        served.model(name, version)
        return protocol.metadata(served.versions)

    def readiness(model: ServedModel) -> Response[ModelReady]:
        ok = model.status == "ready" and service.ready()
        return Response(ModelReady(served.name, ok), status_code=200 if ok else 503)

    @get(
        "/v2/models/{name:str}/ready",
        summary="Model readiness",
        responses=model_ready,
        signature_namespace=namespace,
    )
    async def ready_model(name: ModelName) -> Response[ModelReady]:
        return readiness(served.model(name))

    @get(
        "/v2/models/{name:str}/versions/{version:str}/ready",
        summary="Readiness of one version",
        responses=model_ready,
        signature_namespace=namespace,
    )
    async def ready_version(name: ModelName, version: ModelVersion) -> Response[ModelReady]:
        return readiness(served.model(name, version))

    return [metadata, metadata_version, ready_model, ready_version]
