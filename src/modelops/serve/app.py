"""A bundle directory and a ServeConfig in; the ASGI app that serves that model (and any shadow or
canary models beside it) out.

`create_app` verifies every file of every bundle against its manifest and each model's hash against
its card before anything else, and refuses a shadow or canary whose contract differs from the
primary's, so a tampered or mismatched bundle stops the server from starting, with the reason. The
models themselves are loaded in the lifespan, on the model thread: /health/live answers at once,
/health/ready only once every model reproduces its card's reference predictions.
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

from modelops.errors import ArtifactIntegrityError, DataIssue, DataValidationError, ModelopsError
from modelops.logline import CANARY, FEEDBACK_PREFIX, PRIMARY, SHADOW, FeedbackLine, Outcome
from modelops.serve import logs, openapi, routes, routes_admin, routes_v2, sources, v2, workers
from modelops.serve.config import ServeConfig
from modelops.serve.contract import Contract, Decoded, FeedbackReceipt, Health
from modelops.serve.livedrift import DriftGauges
from modelops.serve.metrics import ServeMetrics
from modelops.serve.models import ServedModel, check_roster
from modelops.serve.observe import RequestObserver
from modelops.serve.predictor import Arrival, Batcher, model_thread
from modelops.serve.predlog import Answered, Hooks, LogUnavailable, PredictionLog, SegmentLog
from modelops.serve.routing import CanaryRouter
from modelops.serve.shadow import ShadowScorer
from modelops.serve.tallies import Tallies
from modelops.types import FloatArray

log = logging.getLogger(logs.SERVER)
# The prediction log's rotation by age, fsync interval and recovery checks; tallies into metrics;
# canary shares another worker changed.
TICK_SECONDS = 0.5
GC_YOUNG_OBJECTS = 20_000  # the collector's first threshold while serving (see `start`)


# --------------------------------------------------------------------------- the service


def roster(bundle_dir: Path, config: ServeConfig) -> list[ServedModel]:
    """Every model the configuration names, verified: the primary, the canaries, the shadows."""
    if config.bundle_sha256 is None:
        raise ArtifactIntegrityError(
            f"{bundle_dir}: no digest vouches for this bundle; pass --bundle-sha256 (or set "
            "MODELOPS_SERVE_BUNDLE_SHA256) to the sha256 of its bundle.json as `modelops "
            "registry bundle` printed it, or serve --ref from the registry. Nothing is "
            "unpickled on the bundle's own word."
        )
    named = [(PRIMARY, sources.Source(directory=bundle_dir, sha256=config.bundle_sha256))]
    named += [(CANARY, sources.parse_canary(t).source) for t in config.canary]
    named += [(SHADOW, sources.parse(t)) for t in config.shadow]
    models = []
    for index, (role, source) in enumerate(named):
        if source.directory is None or source.sha256 is None:
            raise ArtifactIntegrityError(
                f"{role} {source}: a registry ref is bundled by `modelops serve`; the app takes "
                "a bundle directory with its digest (DIR@<sha256 of its bundle.json>)"
            )
        models.append(ServedModel(role, source.directory, source.sha256, config, index))
    check_roster(models)
    return models


class Service:
    """Everything one app serves: the verified models, the primary's contract, the prediction log,
    the metrics, and how traffic is split between the models."""

    def __init__(self, bundle_dir: Path, config: ServeConfig) -> None:
        self.config = config
        self._gc_threshold = gc.get_threshold()  # given back on close
        self.models = roster(bundle_dir, config)
        self.primary = primary = self.models[0]
        self.by_version = {m.version: m for m in self.models}
        # The models that answer requests, by version: the primary and the canaries.
        self.answering = {m.version: m for m in self.models if m.role != SHADOW}
        self.canaries = [m for m in self.models if m.role == CANARY]
        self.shadows = [m for m in self.models if m.role == SHADOW]
        card = primary.card
        self.manifest = primary.manifest
        self.contract = Contract(card.feature_schema, config.max_instances)
        self.protocol = v2.Protocol(self.contract, self.manifest.name, card.classes)
        self.metrics = ServeMetrics(card.feature_schema.names)
        for m in self.models:
            self.metrics.add_model(m.manifest.name, m.version, m.card.artifact.sha256, m.role)
        self.tallies = Tallies(self.metrics, card.classes, card.feature_schema.target.scored)
        self.access = logs.AccessLog(config.access_log)
        windows = {m.version: m.live_drift for m in self.models if m.live_drift is not None}
        if windows:
            self.metrics.register(DriftGauges(windows))
        self.router: CanaryRouter | None = None
        if self.canaries:
            shares = {
                m.version: sources.parse_canary(text).percent
                for m, text in zip(self.canaries, config.canary, strict=True)
            }
            self.router = CanaryRouter(
                [m.version for m in self.canaries],
                shares,
                workers.multiprocess(),
                on_change=self._shares_changed,
            )
        self.log: PredictionLog | None = None
        self.feedback_log: SegmentLog | None = None
        self._feedback_encoder = msgspec.json.Encoder()
        self.shadow: ShadowScorer | None = None
        self.loaded = False  # every model loaded and verified (asked on every request)

    def _shares_changed(self, shares: dict[str, float]) -> None:
        for version, percent in shares.items():
            self.metrics.canary_share.labels(version).set(percent)

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        m = self.metrics
        self.log = PredictionLog(
            self.config.log_dir,
            {"name": self.manifest.name, "version": self.primary.version},
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
        self.feedback_log = SegmentLog(
            self.config.log_dir,
            self.config.log_rotate_rows,
            self.config.log_rotate_bytes,
            self.config.log_rotate_seconds,
            self.config.log_fsync_seconds,
            Hooks(
                rows=m.feedback_outcomes.inc,
                error=m.feedback_log_errors.inc,
                writable=lambda ok: m.feedback_log_writable.set(1 if ok else 0),
            ),
            prefix=FEEDBACK_PREFIX,
            what="feedback log",
        )
        for model in self.models:
            if model.live_drift is not None:
                model.live_drift.start()
        loop = asyncio.get_running_loop()
        ticking = loop.create_task(self._tick(), name="ticks")
        executor = model_thread()
        loading = loop.create_task(self._load(executor), name="load-models")
        try:
            yield
        finally:
            # uvicorn has drained in-flight requests by now (SIGTERM): every answer's rows are in the
            # log already; score what is still queued, then finish the live segment.
            loading.cancel()
            ticking.cancel()
            await self._stop(executor)

    async def _stop(self, executor: ThreadPoolExecutor) -> None:
        for model in self.models:
            if model.batcher is not None:
                await model.batcher.stop()
        if self.shadow is not None:
            await self.shadow.stop()
        executor.shutdown(wait=True)
        assert self.log is not None and self.feedback_log is not None
        await self.log.close()
        await self.feedback_log.close()
        for model in self.models:
            if model.live_drift is not None:
                model.live_drift.stop()
        self.tallies.apply()
        self.access.flush()
        gc.unfreeze()  # an app embedded in a longer-lived process hands its objects back
        gc.set_threshold(*self._gc_threshold)
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
            now = time.time()
            for segment_log in (self.log, self.feedback_log):
                if segment_log is not None:
                    segment_log.tick(now)
            if self.router is not None:
                self.router.sync()
            self.tallies.apply()
            self.access.flush()

    def exposition(self) -> bytes:
        self.tallies.apply()
        return self.metrics.exposition()

    async def _load(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        for model in self.models:
            try:
                model.model = await loop.run_in_executor(executor, model.load)
            except ModelopsError as exc:
                model.failed(str(exc))
            except Exception as exc:
                # An unpickling failure (missing module, corrupt file) is a failed load, not a crash.
                model.failed(f"{type(exc).__name__}: {exc}")
            if model.model is None:
                self.metrics.ready.set(0)
                return
            if model.role != SHADOW:
                model.batcher = Batcher(
                    model.model,
                    self.config.max_batch_rows,
                    self.config.batch_wait_ms / 1000,
                    executor,
                    on_batch=self.metrics.observe_batch,
                )
                model.batcher.start()
            path = model.model.path
            detail = "" if path == "fastpath" else model.model.detail
            self.metrics.set_inference_path(model.version, path, detail)
            model.status = "ready"
        if self.shadows:
            assert self.log is not None
            self.shadow = ShadowScorer(
                self.shadows,
                self.contract,
                executor,
                self.log,
                self.tallies,
                self.metrics,
                self.config.max_batch_rows,
            )
            self.shadow.start()
        self.loaded = True
        self.metrics.ready.set(1)
        # Everything loaded so far lives as long as the process; frozen, the collector stops
        # rescanning it (a full collection over the model took ~80 ms, a p99 spike).
        gc.collect()
        gc.freeze()
        # A request's objects are freed by reference counting, not by the collector, but 16
        # requests in flight hold more than the default 700 new objects: a collection ran every
        # ~18 requests and took 2.7% of the server's CPU. The threshold counts allocations less
        # deallocations, so it bounds how many objects can wait for a collection, whatever the
        # request rate.
        gc.set_threshold(GC_YOUNG_OBJECTS, *self._gc_threshold[1:])
        if (shared := workers.multiprocess()) is not None:
            workers.mark_ready(shared)

    def ready(self) -> bool:
        """Whether this process can answer predictions: every model verified, its log writable."""
        return self.loaded and self.log is not None and self.log.unavailable is None

    def not_ready(self) -> str:
        failed = [m for m in self.models if m.status == "failed"]
        if failed:
            return "; ".join(f"model failed verification: {m.name}: {m.reason}" for m in failed)
        if self.log is not None and self.log.unavailable is not None and self.loaded:
            return self.log.unavailable
        loading = ", ".join(m.name for m in self.models if m.status == "loading")
        return f"loading {loading}; poll /health/ready"

    def health(self) -> Health:
        """Readiness of the server: this process, and with several workers all of them."""
        shared = workers.multiprocess()
        if self.ready():
            if shared is None or workers.all_ready(shared, self.config.workers):
                return Health("ready")
            return Health("loading", f"waiting for all {self.config.workers} workers to load")
        if self.loaded:
            return Health("unavailable", self.not_ready())
        failed = any(m.status == "failed" for m in self.models)
        return Health("failed", self.not_ready()) if failed else Health("loading", None)

    def served(self, version: str | None) -> ServedModel:
        """The served model of that version (the primary's when None); UnknownModel otherwise."""
        if version is None:
            return self.primary
        model = self.by_version.get(version)
        if model is None:
            raise routes.unknown(
                f"version {version[:64]!r}", f"versions: {', '.join(self.by_version)}"
            )
        return model

    def decode(self, body: bytes) -> Decoded:
        """The request body checked against the contract; a violation is counted by field."""
        try:
            return self.contract.decode(body)
        except DataValidationError as exc:
            self.metrics.observe_invalid(exc.issues)
            raise

    def route(self, key: bytes | None, request_id: str) -> ServedModel:
        """The model that answers a request: a canary on its share of routing keys, else the
        primary."""
        router = self.router
        if router is None:
            return self.primary
        index = router.choose(key if key is not None else request_id.encode())
        return self.primary if index < 0 else self.canaries[index]

    async def predict(self, decoded: Decoded, state: dict[str, Any]) -> msgspec.Struct:
        """Score a decoded request; the answer goes out only once the log has taken its rows."""
        model: ServedModel = state.get("model") or self.primary
        answered = await self.score(model, decoded, state)
        return self.contract.response_type(model.ref, answered.predictions, answered.request_id)

    async def score(self, model: ServedModel, decoded: Decoded, state: dict[str, Any]) -> Answered:
        """Rows scored by `model`, logged, counted, and queued for the shadows."""
        batcher, loaded, prediction_log = model.batcher, model.model, self.log
        if batcher is None or loaded is None or prediction_log is None:
            raise ServiceUnavailableException(detail=self.not_ready())
        instances, rows, ids = decoded
        state["instances"] = len(rows)
        self.tallies.instances(len(rows))
        unseen = self.contract.unseen_categories(rows)
        if unseen:
            self.metrics.observe_unseen(unseen)
        own = rows if model.order is None else model.rows_of(rows)
        proba = await batcher.submit(own, state.get("arrival") or Arrival())
        _require_finite(proba)
        labels = model.decision.labels(proba, loaded.classes)
        request_id = state["request_id"]
        predictions = self.contract.predictions(labels, proba.tolist())
        answered = Answered(
            time.time(), request_id, rows, proba, labels, instances, predictions, ids
        )
        try:
            await prediction_log.append(answered, model.logged, model.role)
        except LogUnavailable as exc:
            # A 200 must be in the prediction log; rather no answer than an unrecorded one.
            raise ServiceUnavailableException(detail=str(exc)) from None
        self.tallies.observe(model.version, answered)
        if model.live_drift is not None:
            model.live_drift.observe(answered if own is rows else answered._replace(rows=own))
        if self.shadow is not None:
            self.shadow.enqueue(answered)
        return answered

    def decode_feedback(self, body: bytes) -> list[Outcome]:
        """A feedback body checked against the model's classes; a violation is counted by field."""
        try:
            return self.contract.decode_feedback(body)
        except DataValidationError as exc:
            self.metrics.observe_invalid(exc.issues)
            raise

    async def feedback(self, outcomes: list[Outcome], request_id: str) -> FeedbackReceipt:
        """Outcomes into the feedback log; the answer goes out only once they are written."""
        feedback_log = self.feedback_log
        if feedback_log is None:
            raise ServiceUnavailableException(detail="the feedback log is not open yet")
        now = time.time()
        lines = [FeedbackLine.of(outcome, now, request_id) for outcome in outcomes]
        try:
            await feedback_log.append_encoded(
                self._feedback_encoder.encode_lines(lines), len(lines)
            )
        except LogUnavailable as exc:
            raise ServiceUnavailableException(detail=str(exc)) from None
        return FeedbackReceipt(len(lines), request_id)


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
        description="registry version of the model that answered (the primary's, or a canary's)",
        documentation_only=True,
    ),
    ResponseHeader(
        name="X-Request-ID",
        description="the request's id (yours if you sent a valid one)",
        documentation_only=True,
    ),
]


def create_app(bundle_dir: Path | str, config: ServeConfig | None = None) -> RequestObserver:
    """The app serving the bundle in `bundle_dir` (and the config's shadows and canaries), behind
    the layer that observes every request. Raises ArtifactIntegrityError for a bundle whose files
    are not the ones its manifest and card record, SchemaError for a model that cannot stand beside
    the primary."""
    config = config or ServeConfig()
    service = Service(Path(bundle_dir), config)
    app = Litestar(
        route_handlers=[
            *routes.handlers(service),
            *routes_v2.handlers(service),
            *routes_admin.handlers(service),
        ],
        lifespan=[service.lifespan],
        exception_handlers={Exception: routes.error_handler(config)},
        openapi_config=openapi.config(
            f"modelops: {service.manifest.name}",
            service.primary.version,
            admin=config.admin_token is not None,
        ),
        response_headers=_HEADERS,
        request_max_body_size=config.max_body_bytes,
        logging_config=None,
        debug=False,
    )
    app.state.service = service
    return RequestObserver(app, service.tallies, service.primary.version, service.access)
