"""A bundle directory and a ServeConfig in; the Litestar app that serves that model out.

`create_app` verifies every file of the bundle against its manifest and the model's hash against the
card before anything else, so a tampered bundle stops the server from starting, with the reason. The
model itself is loaded in the lifespan, in a thread: /health/live answers at once, /health/ready
only once the model reproduces the card's reference predictions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    ServiceUnavailableException,
)

from modelops import bundle, files
from modelops.card import Card
from modelops.drift.profile import Profile
from modelops.errors import ArtifactIntegrityError, DataIssue, DataValidationError, ModelopsError
from modelops.serve import logs
from modelops.serve.config import ServeConfig
from modelops.serve.contract import (
    Contract,
    Decision,
    DriftSnapshot,
    ErrorResponse,
    FieldError,
    Health,
    Inference,
    ModelDescription,
    ModelRef,
)
from modelops.serve.livedrift import LiveDrift
from modelops.serve.metrics import MEDIA_TYPE, RequestObserver, ServeMetrics
from modelops.serve.predictor import Batcher, LoadedModel, labels_for, load_model, model_thread
from modelops.serve.predlog import Answered, Dispatcher, PredictionLog

JSON = "application/json"
log = logging.getLogger(logs.SERVER)
_encoder = msgspec.json.Encoder()


class UnsupportedMediaType(ClientException):
    status_code = 415


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


def _status_of(exc: Exception) -> int:
    for kind, status in STATUS_FOR:
        if isinstance(exc, kind):
            return status if status is not None else int(getattr(exc, "status_code", 500))
    return 500


def _problems(exc: Exception, status: int, config: ServeConfig) -> list[FieldError]:
    """What went wrong, by path; built from our own words, never from the request's values."""
    if isinstance(exc, DataValidationError):
        return [FieldError(i.column, f"{i.kind} {i.detail}".strip()) for i in exc.issues]
    if status == 404:
        return [FieldError("$", "no such endpoint; the API is described at /schema")]
    if status == 405:
        return [FieldError("$", "method not allowed on this endpoint (see the Allow header)")]
    if status == 413:
        return [FieldError("$", f"body larger than the limit of {config.max_body_bytes} bytes")]
    if status < 500 or isinstance(exc, ServiceUnavailableException | ArtifactIntegrityError):
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return [FieldError("$", detail)]
    return [FieldError("$", "internal error; the server log has the details under this request_id")]


def _error_handler(config: ServeConfig) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        status = _status_of(exc)
        request_id = request.scope.get("state", {}).get("request_id", "")
        if status >= 500 and not isinstance(exc, ServiceUnavailableException):
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"fields": {"request_id": request_id, "path": request.url.path}},
            )
        body = ErrorResponse(status, _problems(exc, status, config), request_id)
        headers = getattr(exc, "headers", None) or {}
        return Response(_encoder.encode(body), status_code=status, media_type=JSON, headers=headers)

    return handle


# --------------------------------------------------------------------------- the service


class Service:
    """Everything one app serves: the verified bundle, its contract, the model once loaded."""

    def __init__(self, bundle_dir: Path, config: ServeConfig) -> None:
        self.bundle_dir = bundle_dir
        self.config = config
        self.manifest, self.card = bundle.verify_bundle(bundle_dir)
        card = self.card
        self.evaluation: dict[str, Any] = dict(files.read_json(bundle_dir / bundle.METRICS))
        self.contract = Contract(card.feature_schema, config.max_instances)
        self.decision = _decision(card, self.evaluation)
        self.model_ref = ModelRef(self.manifest.name, self.manifest.version, card.artifact.sha256)
        self.metrics = ServeMetrics(
            self.manifest.name,
            self.manifest.version,
            card.artifact.sha256,
            card.feature_schema.names,
            card.classes,
            card.feature_schema.target.scored,
        )
        self.live_drift: LiveDrift | None = None
        if config.drift_window != 0:
            profile_path = bundle_dir / bundle.PROFILE
            self.live_drift = LiveDrift.from_profile(
                Profile.decode(profile_path.read_bytes(), str(profile_path)),
                card.feature_schema.names,
                card.classes,
                config.drift_window,
                config.drift_min_rows,
            )
            self.metrics.registry.register(self.live_drift)
        self.openapi = _encoder.encode(
            self.contract.openapi(
                f"modelops: {self.manifest.name}",
                self.manifest.version,
                live_drift=self.live_drift is not None,
            )
        )
        self.status: str = "loading"
        self.reason: str | None = None
        self.model: LoadedModel | None = None
        self.batcher: Batcher | None = None
        self.dispatcher: Dispatcher | None = None

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        m = self.metrics
        prediction_log = PredictionLog(
            self.config.log_dir,
            {"name": self.manifest.name, "version": self.manifest.version},
            self.config.log_rotate_rows,
            self.config.log_rotate_bytes,
            self.config.log_rotate_seconds,
            on_rows=m.log_rows.inc,
            on_segment=lambda path: m.log_segments.inc(),
        )
        self.dispatcher = Dispatcher(
            [
                prediction_log,
                _AnswerMetrics(m),
                *([self.live_drift] if self.live_drift is not None else []),
            ],
            self.config.log_queue_batches,
            on_error=m.log_errors.inc,
            on_depth=m.log_queue.set,
            tick_seconds=min(1.0, self.config.log_rotate_seconds / 2),
        )
        self.dispatcher.start()
        executor = model_thread()
        loading = asyncio.get_running_loop().create_task(self._load(executor), name="load-model")
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests by now (SIGTERM); score anything still queued,
            # then write out every answered row and close the segment.
            if not loading.done():
                loading.cancel()
            if self.batcher is not None:
                await self.batcher.stop()
            executor.shutdown(wait=True)
            await asyncio.to_thread(self.dispatcher.close)
            gc.unfreeze()  # an app embedded in a longer-lived process hands its objects back
            log.info("prediction log closed", extra={"fields": {"dir": self.config.log_dir}})

    async def _load(self, executor: ThreadPoolExecutor) -> None:
        started = time.perf_counter()
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                executor, load_model, self.bundle_dir, self.card
            )
        except ModelopsError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:
            # An unpickling failure (missing module, corrupt file) is a failed load, not a crash.
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        self.model = model
        self.batcher = Batcher(
            model,
            self.config.max_batch_rows,
            self.config.batch_wait_ms / 1000,
            executor,
            on_batch=self.metrics.observe_batch,
        )
        self.batcher.start()
        self.metrics.set_inference_path(
            model.path, "" if model.path == "fastpath" else model.detail
        )
        self.metrics.ready.set(1)
        # Everything loaded so far lives as long as the process; frozen, the collector stops
        # rescanning it (a full collection over the model took ~80 ms, a p99 spike).
        gc.collect()
        gc.freeze()
        self.status = "ready"
        level = logging.INFO if model.path == "fastpath" else logging.WARNING
        logs.event(
            log,
            level,
            "model ready",
            model=self.manifest.name,
            version=self.manifest.version,
            sha256=self.card.artifact.sha256,
            inference_path=model.path,
            inference_detail=model.detail,
            load_seconds=round(time.perf_counter() - started, 3),
        )

    def _failed(self, reason: str) -> None:
        self.status, self.reason = "failed", reason
        self.metrics.ready.set(0)
        logs.event(log, logging.ERROR, "model not ready", reason=reason)

    def describe(self) -> ModelDescription:
        card, manifest = self.card, self.manifest
        inference = (
            Inference(self.model.path, self.model.detail) if self.model is not None else None
        )
        return ModelDescription(
            **card.provenance(),
            version=manifest.version,
            commit=manifest.commit,
            stages=manifest.stages,
            metrics=self.evaluation,
            decision=self.decision,
            ready=self.status == "ready",
            inference=inference,
        )

    async def predict(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        _require_json(request.headers.get("content-type"))
        batcher, model, dispatcher = self.batcher, self.model, self.dispatcher
        if batcher is None or model is None or dispatcher is None:
            raise ServiceUnavailableException(detail=self._not_ready())
        state = request.scope["state"]
        with batcher.arrival() as arrival:
            body = await _read_body(request)
            try:
                instances, rows = self.contract.decode(body)
            except DataValidationError as exc:
                self.metrics.observe_invalid(exc.issues)
                raise
            state["instances"] = len(rows)
            self.metrics.request_instances.observe(len(rows))
            unseen = self.contract.unseen_categories(rows)
            if unseen:
                self.metrics.observe_unseen(unseen)
            proba = await batcher.submit(rows, arrival)
        if not np.isfinite(proba).all():
            bad = np.flatnonzero(~np.isfinite(proba).all(axis=1)).tolist()
            raise DataValidationError(
                "request body",
                [
                    DataIssue(f"$.instances[{i}]", "values too extreme for the model to score", 0)
                    for i in bad[:50]
                ],
            )
        labels = labels_for(proba, model.classes, self.decision)
        request_id = state["request_id"]
        predictions = self.contract.predictions(labels, proba.tolist())
        answered = Answered(time.time(), request_id, rows, proba, labels, instances, predictions)
        if not dispatcher.offer(answered):
            # A 200 must be in the prediction log; rather no answer than an unrecorded one.
            raise ServiceUnavailableException(detail="prediction log is backlogged; retry shortly")
        response = self.contract.response_type(self.model_ref, predictions, request_id)
        return Response(_encoder.encode(response), media_type=JSON)

    def _not_ready(self) -> str:
        if self.status == "failed":
            return f"model failed verification: {self.reason}"
        return "model is loading; poll /health/ready"


class _AnswerMetrics:
    """Observer that counts labels and probabilities off the request path."""

    def __init__(self, metrics: ServeMetrics) -> None:
        self._metrics = metrics

    def observe(self, answered: Answered) -> None:
        self._metrics.answers.observe(answered.labels, answered.proba)

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


def _decision(card: Card, evaluation: dict[str, Any]) -> Decision:
    target = card.feature_schema.target
    threshold = evaluation.get("threshold")
    if target.is_binary and isinstance(threshold, int | float) and not isinstance(threshold, bool):
        return Decision("threshold", positive=target.positive, threshold=float(threshold))
    return Decision("argmax")


def _require_json(content_type: str | None) -> None:
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


async def _read_body(request: Request[Any, Any, Any]) -> bytes:
    try:
        return await request.body()
    except InternalServerException:
        # Litestar reports a client that hung up mid-body as a server error; it is not one.
        raise ClientException(
            detail="the client disconnected before the body was complete"
        ) from None


# --------------------------------------------------------------------------- the app


def create_app(bundle_dir: Path | str, config: ServeConfig | None = None) -> Litestar:
    """The app serving the bundle in `bundle_dir`; raises ArtifactIntegrityError for a bundle whose
    files are not the ones its manifest and card record."""
    config = config or ServeConfig()
    service = Service(Path(bundle_dir), config)

    @post("/v1/predict", status_code=200, include_in_schema=False)
    async def predict(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await service.predict(request)

    @get("/v1/model", include_in_schema=False)
    async def model() -> Response[bytes]:
        return Response(_encoder.encode(service.describe()), media_type=JSON)

    @get("/v1/drift", include_in_schema=False)
    async def live_drift() -> Response[bytes]:
        assert service.live_drift is not None  # the route exists only when live drift is on
        live = service.live_drift
        snapshot = DriftSnapshot(live.window.window, live.snapshot())
        return Response(_encoder.encode(snapshot), media_type=JSON)

    @get("/health/live", include_in_schema=False)
    async def live() -> Response[bytes]:
        return Response(_encoder.encode(Health("live")), media_type=JSON)

    @get("/health/ready", include_in_schema=False)
    async def ready() -> Response[bytes]:
        if service.status == "ready":
            return Response(_encoder.encode(Health("ready")), media_type=JSON)
        health = Health("failed" if service.status == "failed" else "loading", service.reason)
        return Response(_encoder.encode(health), status_code=503, media_type=JSON)

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        return Response(service.metrics.exposition(), media_type=MEDIA_TYPE)

    @get(["/schema", "/schema/openapi.json"], include_in_schema=False)
    async def schema() -> Response[bytes]:
        return Response(service.openapi, media_type=JSON)

    app = Litestar(
        route_handlers=[
            predict,
            model,
            *([live_drift] if service.live_drift is not None else []),
            live,
            ready,
            metrics,
            schema,
        ],
        lifespan=[service.lifespan],
        exception_handlers={Exception: _error_handler(config)},
        # The OpenAPI document is generated from the msgspec types the server decodes with.
        openapi_config=None,
        request_max_body_size=config.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    app.state.service = service
    # Outermost, so 404/405/413 answers get the headers, the metrics and an access line too.
    app.asgi_handler = RequestObserver(
        app.asgi_handler,
        service.metrics,
        service.manifest.version,
        config.access_log,
        endpoints=frozenset(route.path for route in app.routes),
    )
    return app
