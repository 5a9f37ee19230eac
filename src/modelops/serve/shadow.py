"""Answered requests in (a deque append on the request path); each shadow model's answers to them out:
in the prediction log with `role: "shadow"` and the shadow's version, compared with the answer the
client got (label agreement, mean |Δp| per row) in the metrics, and in the shadow's drift window.

A shadow never stands between a request and its answer. Its thread wakes every `interval` seconds
(sooner once `batch_rows` rows wait), takes everything queued and scores it in batches of up to
`batch_rows` rows: a batch the fast path computes in numpy alone is scored on this thread; a larger
one goes to the model thread every model shares (one thread calling into OpenMP, see
serve/predictor.py), where the estimator's compiled code runs without the GIL. What it found goes
back to the event loop (`call_soon_threadsafe`): the counts into the tallies, the lines into the
prediction log's next group write.

Shadow rows are not part of the 200 promise: they are written after the answer has gone out, so a
crash can lose the last of them. Rows that cannot be logged, or are dropped because the backlog
passed `backlog_rows` (a shadow slower than the traffic), are counted in
`modelops_shadow_lost_rows_total{version,reason}` and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from modelops.logline import SHADOW
from modelops.serve import logs
from modelops.serve.contract import Contract
from modelops.serve.metrics import DIFF_BUCKETS, ServeMetrics
from modelops.serve.predlog import Answered, LogUnavailable, PredictionLog, encode
from modelops.serve.tallies import Tallies
from modelops.types import FloatArray, Row

if TYPE_CHECKING:
    from modelops.serve.models import ServedModel

INTERVAL_SECONDS = 0.05
BACKLOG_ROWS = 50_000
WARN_SECONDS = 10.0
log = logging.getLogger(logs.SERVER)


class ShadowScorer:
    """Every shadow model's thread of work, fed answered batches by the event loop."""

    def __init__(
        self,
        shadows: Sequence[ServedModel],
        contract: Contract,
        executor: ThreadPoolExecutor,
        prediction_log: PredictionLog,
        tallies: Tallies,
        metrics: ServeMetrics,
        batch_rows: int = 256,
        interval: float = INTERVAL_SECONDS,
        backlog_rows: int = BACKLOG_ROWS,
    ) -> None:
        self.shadows = list(shadows)
        self.contract = contract
        self.executor = executor
        self.log = prediction_log
        self.tallies = tallies
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.interval = interval
        self.backlog_rows = backlog_rows
        self._queue: deque[Answered] = deque()
        self._queued = 0  # rows queued, counted by the event loop
        self._taken = 0  # rows taken, counted by the shadow thread
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._encoder = msgspec.json.Encoder()
        self._bounds = np.array(DIFF_BUCKETS, dtype=np.float64)
        self._warned = -WARN_SECONDS

    # --- the request path: queue only

    def enqueue(self, answered: Answered) -> None:
        n = len(answered.rows)
        waiting = self._queued - self._taken
        if waiting + n > self.backlog_rows:
            self._lost(n, "backlog")
            return
        self._queue.append(answered)
        self._queued += n
        if waiting + n >= self.batch_rows and not self._wake.is_set():
            self._wake.set()

    # --- life

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Score what is queued, hand it to the log, then end the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        await asyncio.sleep(0)  # the thread's last hand-overs run before the log closes

    # --- the shadow thread

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            taken: list[Answered] = []
            while self._queue:
                taken.append(self._queue.popleft())
            if taken:
                self._taken += sum(len(a.rows) for a in taken)
                for model in self.shadows:
                    try:
                        self._score(model, taken)
                    except Exception as exc:
                        # A shadow that fails must not stop the others, nor the server.
                        n = sum(len(a.rows) for a in taken)
                        self._hand_over(self._lost, n, "error", model.version)
                        logs.event(
                            log,
                            logging.ERROR,
                            "shadow model failed to score",
                            version=model.version,
                            error=f"{type(exc).__name__}: {exc}",
                        )
            if stopping and not self._queue:
                return

    def _score(self, model: ServedModel, taken: list[Answered]) -> None:
        rows: list[Row] = [r for a in taken for r in a.rows]
        own = model.rows_of(rows)
        proba = self._predict(model, own)
        answer = np.concatenate([a.proba for a in taken])
        answer_labels = [label for a in taken for label in a.labels]
        loaded = model.model
        assert loaded is not None
        labels = model.decision.labels(proba, loaded.classes)
        agreed = sum(1 for a, b in zip(labels, answer_labels, strict=True) if a == b)
        diff = np.abs(proba - answer).mean(axis=1)
        bins = np.bincount(
            np.searchsorted(self._bounds, diff, side="left"), minlength=len(self._bounds) + 1
        )
        predictions = self.contract.predictions(labels, proba.tolist())
        now = time.time()
        data, start = [], 0
        for a in taken:
            stop = start + len(a.rows)
            mine = Answered(
                now,
                a.request_id,
                a.rows,
                proba[start:stop],
                labels[start:stop],
                a.instances,
                predictions[start:stop],
                a.ids,  # the shadow's rows join their outcomes as the answer's do
            )
            data.append(encode(self._encoder, mine, model.logged, SHADOW))
            start = stop
        if model.live_drift is not None:
            model.live_drift.observe(Answered(now, "", list(own), proba, labels, (), ()))
        self._hand_over(
            self._landed,
            model.version,
            b"".join(data),
            len(rows),
            agreed,
            bins.tolist(),
            float(diff.sum()),
        )

    def _predict(self, model: ServedModel, rows: Sequence[Row]) -> FloatArray:
        loaded = model.model
        assert loaded is not None
        fast, parts = loaded.fast, []
        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start : start + self.batch_rows]
            if fast is not None and fast.numpy_only(len(chunk)):
                parts.append(loaded.predict_proba(chunk))
            else:
                parts.append(self.executor.submit(loaded.predict_proba, chunk).result())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return  # the loop closed meanwhile: the server is gone

    # --- back on the event loop

    def _landed(
        self, version: str, data: bytes, rows: int, agreed: int, diffs: list[int], total: float
    ) -> None:
        self.tallies.shadow(version, rows, agreed, diffs, total)
        written = self.log.append_encoded(data, rows)
        written.add_done_callback(lambda f: self._written(f, version, rows))

    def _written(self, done: asyncio.Future[None], version: str, rows: int) -> None:
        exc = LogUnavailable("cancelled") if done.cancelled() else done.exception()
        if exc is not None:
            reason = "log" if isinstance(exc, LogUnavailable) else "error"
            self._lost(rows, reason, version)

    def _lost(self, rows: int, reason: str, version: str | None = None) -> None:
        for model in self.shadows:
            if version is None or model.version == version:
                self.metrics.shadow_lost.labels(model.version, reason).inc(rows)
        now = time.monotonic()
        if now - self._warned >= WARN_SECONDS:  # under overload, a line now and then, not per row
            self._warned = now
            logs.event(
                log,
                logging.WARNING,
                "shadow rows lost (counted in modelops_shadow_lost_rows_total)",
                rows=rows,
                reason=reason,
                version=version or "every shadow",
            )
