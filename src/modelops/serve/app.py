"""A bundle directory and a ServeConfig in; the ASGI app that serves that model out.

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
from litestar import Litestar
from litestar.datastructures import ResponseHeader
from litestar.exceptions import ServiceUnavailableException

from modelops import files
from modelops.drift.profile import Profile
from modelops.errors import ArtifactIntegrityError, DataIssue, DataValidationError, ModelopsError
from modelops.evaluation import Decision
from modelops.registry import bundle
from modelops.serve import logs, openapi, routes, workers
from modelops.serve.config import ServeConfig
from modelops.serve.contract import Contract, Decoded, Health, Inference, ModelDescription, ModelRef
from modelops.serve.livedrift import LiveDrift
from modelops.serve.metrics import ServeMetrics
from modelops.serve.observe import RequestObserver
from modelops.serve.predictor import Arrival, Batcher, LoadedModel, load_model, model_thread
from modelops.serve.predlog import Answered, Hooks, LogUnavailable, PredictionLog
from modelops.serve.tallies import Tallies
from modelops.serve.workers import SharedCounts
from modelops.types import FloatArray

log = logging.getLogger(logs.SERVER)
# The prediction log's rotation by age, fsync interval and recovery checks; tallies into metrics.
TICK_SECONDS = 0.5


# --------------------------------------------------------------------------- the service


class Service:
    """Everything one app serves: the verified bundle, its contract, the model once loaded."""

    def __init__(self, bundle_dir: Path, config: ServeConfig) -> None:
        self.bundle_dir = bundle_dir
        self.config = config
        if config.bundle_sha256 is None:
            raise ArtifactIntegrityError(
                f"{bundle_dir}: no digest vouches for this bundle; pass --bundle-sha256 (or set "
                "MODELOPS_SERVE_BUNDLE_SHA256) to the sha256 of its bundle.json as `modelops "
                "registry bundle` printed it, or serve --ref from the registry. Nothing is "
                "unpickled on the bundle's own word."
            )
        self.verified = bundle.verify(bundle_dir, config.bundle_sha256)
        self.manifest, self.card = self.verified.manifest, self.verified.card
        card = self.card
        self.evaluation: dict[str, Any] = dict(files.read_json(bundle_dir / bundle.METRICS))
        self.contract = Contract(card.feature_schema, config.max_instances)
        self.decision = Decision.of(card.feature_schema.target, self.evaluation)
        self.model_ref = ModelRef(self.manifest.name, self.manifest.version, card.artifact.sha256)
        self.metrics = ServeMetrics(
            self.manifest.name,
            self.manifest.version,
            card.artifact.sha256,
            card.feature_schema.names,
        )
        self.tallies = Tallies(self.metrics, card.classes, card.feature_schema.target.scored)
        self.access = logs.AccessLog(config.access_log)
        self.live_drift: LiveDrift | None = None
        if config.drift_window != 0:
            profile_path = bundle_dir / bundle.PROFILE
            self.live_drift = LiveDrift.from_profile(
                Profile.decode(profile_path.read_bytes(), str(profile_path)),
                card.feature_schema.names,
                card.classes,
                config.drift_window,
                config.drift_min_rows,
                shared=SharedCounts(shared) if (shared := workers.multiprocess()) else None,
            )
            self.metrics.register(self.live_drift)
        self.status: str = "loading"
        self.reason: str | None = None
        self.model: LoadedModel | None = None
        self.batcher: Batcher | None = None
        self.log: PredictionLog | None = None
        # Fed inline once an answer's rows are in the log: each is a list append.
        self.observers: list[Tallies | LiveDrift] = [self.tallies]
        if self.live_drift is not None:
            self.observers.append(self.live_drift)

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        m = self.metrics
        self.log = PredictionLog(
            self.config.log_dir,
            {"name": self.manifest.name, "version": self.manifest.version},
            self.config.log_rotate_rows,
            self.config.log_rotate_bytes,
            self.config.log_rotate_seconds,
            self.config.log_fsync_seconds,
            Hooks(
                rows=m.log_rows.inc,
                segment=lambda path: m.log_segments.inc(),
                error=m.log_errors.inc,
                writable=lambda ok: m.log_writable.set(1 if ok else 0),
                write_seconds=m.log_write_seconds.observe,
            ),
        )
        if self.live_drift is not None:
            self.live_drift.start()
        ticking = asyncio.get_running_loop().create_task(self._tick(), name="ticks")
        executor = model_thread()
        loading = asyncio.get_running_loop().create_task(self._load(executor), name="load-model")
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests by now (SIGTERM): every answer's rows are in the
            # log already; score what is still queued, then finish the live segment.
            loading.cancel()
            ticking.cancel()
            if self.batcher is not None:
                await self.batcher.stop()
            executor.shutdown(wait=True)
            await self.log.close()
            if self.live_drift is not None:
                self.live_drift.stop()
            self.tallies.apply()
            self.access.flush()
            gc.unfreeze()  # an app embedded in a longer-lived process hands its objects back
            logs.event(
                log,
                logging.INFO,
                "prediction log closed",
                dir=self.config.log_dir,
                rows=self.log.rows_written,
            )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.log is not None:
                self.log.tick(time.time())
            self.tallies.apply()
            self.access.flush()

    def exposition(self) -> bytes:
        self.tallies.apply()
        return self.metrics.exposition()

    async def _load(self, executor: ThreadPoolExecutor) -> None:
        started = time.perf_counter()
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                executor, load_model, self.bundle_dir, self.verified
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
        if (shared := workers.multiprocess()) is not None:
            workers.mark_ready(shared)
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

    def ready(self) -> bool:
        """Whether this process can answer predictions: its model verified, its log writable."""
        return self.status == "ready" and self.log is not None and self.log.unavailable is None

    def not_ready(self) -> str:
        if self.status == "failed":
            return f"model failed verification: {self.reason}"
        if self.status == "ready" and self.log is not None and self.log.unavailable is not None:
            return self.log.unavailable
        return "model is loading; poll /health/ready"

    def health(self) -> Health:
        """Readiness of the server: this process, and with several workers all of them."""
        shared = workers.multiprocess()
        if self.ready():
            if shared is None or workers.all_ready(shared, self.config.workers):
                return Health("ready")
            return Health("loading", f"waiting for all {self.config.workers} workers to load")
        if self.status == "ready":
            return Health("unavailable", self.not_ready())
        return Health("failed" if self.status == "failed" else "loading", self.reason)

    def decode(self, body: bytes) -> Decoded:
        """The request body checked against the contract; a violation is counted by field."""
        try:
            return self.contract.decode(body)
        except DataValidationError as exc:
            self.metrics.observe_invalid(exc.issues)
            raise

    async def predict(self, decoded: Decoded, state: dict[str, Any]) -> msgspec.Struct:
        """Score a decoded request; the answer goes out only once the log has taken its rows."""
        batcher, model, prediction_log = self.batcher, self.model, self.log
        if batcher is None or model is None or prediction_log is None:
            raise ServiceUnavailableException(detail=self.not_ready())
        instances, rows = decoded
        state["instances"] = len(rows)
        self.tallies.instances(len(rows))
        unseen = self.contract.unseen_categories(rows)
        if unseen:
            self.metrics.observe_unseen(unseen)
        proba = await batcher.submit(rows, state.get("arrival") or Arrival())
        _require_finite(proba)
        labels = self.decision.labels(proba, model.classes)
        request_id = state["request_id"]
        predictions = self.contract.predictions(labels, proba.tolist())
        answered = Answered(time.time(), request_id, rows, proba, labels, instances, predictions)
        try:
            await prediction_log.append(answered)
        except LogUnavailable as exc:
            # A 200 must be in the prediction log; rather no answer than an unrecorded one.
            raise ServiceUnavailableException(detail=str(exc)) from None
        for observer in self.observers:
            observer.observe(answered)
        return self.contract.response_type(self.model_ref, predictions, request_id)


def _require_finite(proba: FloatArray) -> None:
    if np.isfinite(proba).all():
        return
    bad = np.flatnonzero(~np.isfinite(proba).all(axis=1)).tolist()
    raise DataValidationError(
        "request body",
        [
            DataIssue(f"$.instances[{i}]", "values too extreme for the model to score", 0)
            for i in bad[:50]
        ],
    )


# --------------------------------------------------------------------------- the app

# Set on every response by RequestObserver; declared here so the OpenAPI document shows them.
_HEADERS = [
    ResponseHeader(
        name="X-Model-Version",
        description="registry version of the model that answered",
        documentation_only=True,
    ),
    ResponseHeader(
        name="X-Request-ID",
        description="the request's id (yours if you sent a valid one)",
        documentation_only=True,
    ),
]


def create_app(bundle_dir: Path | str, config: ServeConfig | None = None) -> RequestObserver:
    """The app serving the bundle in `bundle_dir`, behind the layer that observes every request.
    Raises ArtifactIntegrityError for a bundle whose files are not the ones its manifest and card
    record."""
    config = config or ServeConfig()
    service = Service(Path(bundle_dir), config)
    app = Litestar(
        route_handlers=routes.handlers(service),
        lifespan=[service.lifespan],
        exception_handlers={Exception: routes.error_handler(config)},
        openapi_config=openapi.config(
            f"modelops: {service.manifest.name}", service.manifest.version
        ),
        response_headers=_HEADERS,
        request_max_body_size=config.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    app.state.service = service
    return RequestObserver(app, service.tallies, service.manifest.version, service.access)
