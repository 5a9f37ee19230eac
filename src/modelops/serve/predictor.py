"""A bundle directory in; a verified model that turns rows into probabilities and labels out, with
concurrent requests micro-batched into few model calls.

Loading refuses what is not exactly the registered model: the bytes are hashed before they are
unpickled, the loaded Pipeline must reproduce the card's reference predictions, and the fast path is
used only if it reproduces the Pipeline on probe rows; otherwise rows go to the Pipeline itself, and
the reason is kept for the logs, the metrics and GET /v1/model.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np

from modelops.fitted import check_reference
from modelops.registry import bundle
from modelops.schema import FeatureSchema, frame_from_records
from modelops.serve import fastpath
from modelops.types import FloatArray, Row

# Small batches the fast path computes in numpy alone take a millisecond at most, about what a
# hand-off to another thread and back costs, so they run on the event loop. Everything that calls
# into sklearn's compiled code runs on the one model thread. One thread matters: each thread that
# enters an OpenMP region gets its own team of workers, and once a second thread had run
# HistGradientBoosting, predicting 1000 rows took ~11 ms instead of ~6 on this two-core machine,
# in either thread (measured); with a single calling thread it stays at ~6.
INLINE_MAX_ROWS = 64


def model_thread() -> ThreadPoolExecutor:
    """The single thread that loads the model and runs every call into its compiled code."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")


@dataclass(frozen=True)
class LoadedModel:
    pipeline: Any
    schema: FeatureSchema
    classes: list[Any]
    fast: fastpath.FastPath | None
    path: Literal["fastpath", "pipeline"]
    detail: str  # the fast path's description, or why the Pipeline is used instead

    def predict_proba(self, rows: Sequence[Row]) -> FloatArray:
        if self.fast is not None:
            return self.fast.predict_proba(rows)
        names = self.schema.names
        frame = frame_from_records(self.schema, [dict(zip(names, r, strict=True)) for r in rows])
        return np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)


def load_model(directory: Path, verified: bundle.Verified) -> LoadedModel:
    """Unpickle the bundle's model only if its bytes are the ones the verified manifest vouches
    for, then prove it and derive the fast path. Raises ArtifactIntegrityError when the model is not
    the registered one."""
    card = verified.card
    pipeline = joblib.load(io.BytesIO(bundle.read_model(directory, verified)))
    check_reference(pipeline, card)
    schema = card.feature_schema
    classes = list(card.classes)
    try:
        fast = fastpath.derive(pipeline, schema)
        probes = fastpath.probe_records(schema, card.reference.rows)
        diff = fastpath.verify(fast, pipeline, schema, probes)
    except fastpath.UnsupportedPipeline as exc:
        return LoadedModel(pipeline, schema, classes, None, "pipeline", f"no fast path: {exc}")
    detail = f"{fast.description}; max |Δp| {diff:.2g} on {len(probes)} probe rows"
    return LoadedModel(pipeline, schema, classes, fast, "fastpath", detail)


# --------------------------------------------------------------------------- micro-batching


@dataclass
class Arrival:
    """A predict request between entering the handler and handing its rows to the batcher."""

    submitted: bool = False


@dataclass
class _Pending:
    rows: Sequence[Row]
    future: asyncio.Future[FloatArray] = field(repr=False)


class Batcher:
    """Gathers rows of concurrent requests into one model call.

    A lone request is scored at once. When other requests are already inside the handler (their
    bodies being read or decoded), the batcher waits for them, at most `wait_seconds`, so they share
    the call; it never waits for requests that have not arrived.
    """

    def __init__(
        self,
        model: LoadedModel,
        max_rows: int,
        wait_seconds: float,
        executor: ThreadPoolExecutor,
        on_batch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        self._model = model
        self._max_rows = max_rows
        self._wait = wait_seconds
        # Called per model call with (rows, seconds spent waiting for company, seconds scoring).
        self._on_batch = on_batch or (lambda rows, waited, scored: None)
        self._pending: deque[_Pending] = deque()
        self._arriving = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._executor = executor
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Score what is queued, then end the loop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    @contextmanager
    def arrival(self) -> Iterator[Arrival]:
        arrival = Arrival()
        self._arriving += 1
        try:
            yield arrival
        finally:
            if not arrival.submitted:
                self._arriving -= 1

    async def submit(self, rows: Sequence[Row], arrival: Arrival) -> FloatArray:
        if not arrival.submitted:
            arrival.submitted = True
            self._arriving -= 1
        if self._stopping:
            raise RuntimeError("the batcher is stopping")
        future: asyncio.Future[FloatArray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(rows, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch = [self._pending.popleft()]
            n = len(batch[0].rows)
            opened = loop.time()
            deadline = opened + self._wait
            while True:
                while self._pending and n + len(self._pending[0].rows) <= self._max_rows:
                    item = self._pending.popleft()
                    batch.append(item)
                    n += len(item.rows)
                if self._pending or n >= self._max_rows or self._arriving <= 0:
                    break  # full, or nobody else is on the way
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                # A timer that sets the same event, rather than asyncio.wait_for, which wraps the
                # wait in a task on every call; on timeout, collect once more, then the deadline
                # ends the wait.
                timer = loop.call_later(remaining, self._wake.set)
                await self._wake.wait()
                timer.cancel()
            await self._score(loop, batch, n, loop.time() - opened)

    async def _score(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], n: int, waited: float
    ) -> None:
        rows = batch[0].rows if len(batch) == 1 else [r for item in batch for r in item.rows]
        fast = self._model.fast
        started = time.perf_counter()
        try:
            if fast is not None and n <= INLINE_MAX_ROWS and fast.numpy_only(n):
                proba = self._model.predict_proba(rows)
            else:
                proba = await loop.run_in_executor(self._executor, self._model.predict_proba, rows)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self._on_batch(n, waited, time.perf_counter() - started)
        start = 0
        for item in batch:
            stop = start + len(item.rows)
            if not item.future.done():
                item.future.set_result(proba[start:stop])
            start = stop
