"""Answered rows in; JSON lines in rotating segment files out, written before the answer is sent.

**A 200 is a promise.** `append` returns only once the request's lines have been written to the
live segment (write(2) returned), so they are in the operating system's page cache: they survive the
server process dying the next instant (SIGKILL, out of memory), and a reader sees them. Requests
answered together share one write (group commit): the lines of every request that finished scoring
in the same event-loop turn go out in a single write(2). When a write fails (disk full, the segment
or its directory deleted), the requests in that write get no 200 (the caller answers 503), the
segment is cut back to what had been answered, and the log stays unwritable, so every prediction
gets a 503 and readiness fails, until a probe write in the directory succeeds again; then it
recovers on its own.

**What a machine crash can lose.** The page cache reaches the disk when the worker thread fsyncs the
live segment: every `fsync_seconds` (default 1 s) while lines are being written, and whenever a
segment is finished. A power loss or kernel crash can lose up to that interval's lines. With
`fsync_seconds = 0` every write is fsynced before its requests are answered (group commit again);
bench/serve.py measures what each policy costs.

Segment files, their locks and their recovery are `serve/segments.py`; one line per answered row,
as `modelops.logline.LogLine` defines it. The feedback log (`POST /v1/feedback`'s outcomes, one
`modelops.logline.FeedbackLine` each) is the same `SegmentLog` with its own kind of segment, under
the same rules.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from modelops.logline import PREDICTION_PREFIX, PRIMARY, LoggedModel, LogLine
from modelops.serve import logs, segments

RECOVERY_SECONDS = 60.0  # how often a running log looks for segments whose writer is gone

log = logging.getLogger(logs.SERVER)


class Answered(NamedTuple):
    """One request's rows as answered with a 200."""

    timestamp: float  # seconds since the epoch, when the answer was computed
    request_id: str
    rows: Sequence[tuple[Any, ...]]  # inputs in schema order (the scoring model's)
    proba: npt.NDArray[np.float64]
    labels: list[Any]
    instances: Sequence[Any]  # each encodes to the row's `inputs` object (the request's Structs)
    predictions: Sequence[Any]  # each encodes to the row's `output` object (the response's)
    ids: Sequence[str | None] | None = None  # the instances' ids, when the request gave any


class LogUnavailable(Exception):
    """A log cannot take lines now; the message says why."""


def iso_utc(timestamp: float) -> str:
    """`2026-11-27T05:08:14.804315Z`, rounded as datetime.fromtimestamp rounds; the date part is
    formatted once a second. Safe from any thread: the cached second is replaced, never edited."""
    global _second
    fraction, whole = math.modf(timestamp)
    us, second = round(fraction * 1e6), int(whole)
    if us >= 1_000_000:
        second, us = second + 1, us - 1_000_000
    cached = _second
    if second != cached[0]:
        cached = _second = (
            second,
            datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        )
    return f"{cached[1]}.{us:06d}Z"


_second: tuple[int, str] = (-1, "")


def encode(
    encoder: msgspec.json.Encoder, answered: Answered, model: LoggedModel, role: str = PRIMARY
) -> bytes:
    """The log lines of an answered batch, scored by `model` in `role`. Any thread may call this,
    each with an encoder of its own."""
    timestamp, request_id = iso_utc(answered.timestamp), answered.request_id
    # The request's own Structs and the response's predictions encode straight to the line's
    # `inputs` and `output`: no per-row dicts to build.
    if answered.ids is None:
        lines = [
            LogLine(timestamp, request_id, model, inputs, output, None, role)
            for inputs, output in zip(answered.instances, answered.predictions, strict=True)
        ]
    else:
        lines = [
            LogLine(timestamp, request_id, model, inputs, output, id, role)
            for inputs, output, id in zip(
                answered.instances, answered.predictions, answered.ids, strict=True
            )
        ]
    return encoder.encode_lines(lines)


class Hooks(NamedTuple):
    """What the log reports, for metrics: rows written, segments finished, write failures, whether
    it is writable, and each group write's duration."""

    rows: Callable[[int], None] = lambda n: None
    segment: Callable[[Path], None] = lambda p: None
    error: Callable[[], None] = lambda: None
    writable: Callable[[bool], None] = lambda ok: None
    write_seconds: Callable[[float], None] = lambda s: None


class _Pending(NamedTuple):
    data: bytes
    rows: int
    done: asyncio.Future[None]


class SegmentLog:
    """A log of JSON lines in segments of one kind (`prefix`): the live segment, written from the
    event loop; fsync, finishing and recovery on one worker thread, in the order they were asked
    for. `what` names the log in messages."""

    def __init__(
        self,
        directory: Path | str,
        rotate_rows: int,
        rotate_bytes: int,
        rotate_seconds: float,
        fsync_seconds: float = 1.0,
        hooks: Hooks | None = None,
        prefix: str = PREDICTION_PREFIX,
        what: str = "prediction log",
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix, self.what = prefix, what
        self._rotate_rows, self._rotate_bytes = rotate_rows, rotate_bytes
        self._rotate_seconds, self._fsync_seconds = rotate_seconds, fsync_seconds
        self._hooks = hooks or Hooks()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=what.replace(" ", "-"))
        self._pending: list[_Pending] = []
        self._draining: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._seq = 0
        self._opened = self._synced = self._recovered = 0.0
        self._rows = self._bytes = 0
        self._dirty = False
        self.unavailable: str | None = None  # why the log cannot be written, while it cannot
        self._probing = False
        self.rows_written = 0
        self.closed = False
        self._report_recovered(segments.recover(self.directory, prefix))
        self._hooks.writable(True)

    def append_encoded(self, data: bytes, rows: int) -> asyncio.Future[None]:
        """Lines encoded already (by `encode`, on any thread) go into the next group write; the future
        is done once they are written, or fails with LogUnavailable."""
        done = asyncio.get_running_loop().create_future()
        if self.unavailable is not None:
            done.set_exception(LogUnavailable(self.unavailable))
            return done
        self._pending.append(_Pending(data, rows, done))
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())
        return done

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                if self._write(group) and self._fsync_seconds == 0 and self._fd is not None:
                    await asyncio.wrap_future(self._worker.submit(os.fsync, self._fd))
                for item in group:
                    if not item.done.done():
                        item.done.set_result(None)
        finally:
            self._draining = None

    def _write(self, group: list[_Pending]) -> bool:
        data = b"".join(item.data for item in group)
        started = time.perf_counter()
        keep = self._bytes
        try:
            if self.unavailable is not None:
                raise LogUnavailable(self.unavailable)
            fd = self._fd if self._fd is not None else self._open(time.time())
            segments.write_all(fd, data)
            if os.fstat(fd).st_nlink == 0:
                raise FileNotFoundError(f"{self._path}: deleted while the server writes to it")
        except (OSError, LogUnavailable) as exc:
            self._fail(exc, keep)
            for item in group:
                item.done.set_exception(LogUnavailable(self.unavailable or str(exc)))
            return False
        rows = sum(item.rows for item in group)
        self._rows += rows
        self._bytes += len(data)
        self.rows_written += rows
        self._dirty = True
        self._hooks.rows(rows)
        self._hooks.write_seconds(time.perf_counter() - started)
        if self._rows >= self._rotate_rows or self._bytes >= self._rotate_bytes:
            self._finish()
        return True

    def _open(self, now: float) -> int:
        self._fd, self._path, self._seq = segments.create(
            self.directory, self.prefix, now, self._seq
        )
        self._opened = self._synced = now
        self._rows = self._bytes = 0
        return self._fd

    def _fail(self, exc: BaseException, keep: int) -> None:
        if self.unavailable is None:
            self.unavailable = f"{self.what} cannot be written: {exc}"
            self._hooks.writable(False)
            logs.event(log, logging.ERROR, f"{self.what} unwritable; answering 503", error=str(exc))
        self._hooks.error()
        fd, path = self._fd, self._path
        self._fd = self._path = None
        if fd is not None and path is not None:
            self._submit(segments.abandon, fd, path, keep)

    # ----------------------------------------------------------------------- housekeeping

    def tick(self, now: float) -> None:
        """Once a second, on the event loop: rotate by age, fsync by interval, recover abandoned
        segments, and probe the directory while the log is unwritable."""
        if self._fd is not None and now - self._opened >= self._rotate_seconds:
            self._finish()
        if (
            self._fd is not None
            and self._dirty
            and self._fsync_seconds > 0
            and now - self._synced >= self._fsync_seconds
        ):
            self._synced, self._dirty = now, False
            self._submit(os.fsync, self._fd)
        if now - self._recovered >= RECOVERY_SECONDS:
            self._recovered = now
            self._submit(segments.recover, self.directory, self.prefix).add_done_callback(
                lambda f: self._report_recovered(f.result()) if not f.exception() else None
            )
        if self.unavailable is not None and not self._probing:
            self._probing = True
            loop = asyncio.get_running_loop()
            probe = self._worker.submit(segments.probe, self.directory)
            probe.add_done_callback(lambda f: loop.call_soon_threadsafe(self._probed, f))

    def _probed(self, probe: Future[None]) -> None:
        self._probing = False
        if probe.exception() is None and self.unavailable is not None:
            self.unavailable = None
            self._hooks.writable(True)
            logs.event(log, logging.WARNING, f"{self.what} writable again; answering")

    def _finish(self) -> None:
        fd, path = self._fd, self._path
        self._fd = self._path = None
        if fd is not None and path is not None:
            self._submit(segments.finish, fd, path).add_done_callback(self._finished)

    def _finished(self, done: Future[Path]) -> None:
        if done.exception() is None:
            self._hooks.segment(done.result())

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._worker.submit(fn, *args)
        future.add_done_callback(self._log_failure)
        return future

    def _log_failure(self, done: Future[Any]) -> None:
        exc = done.exception()
        if exc is not None:
            self._hooks.error()
            logs.event(log, logging.ERROR, f"{self.what} housekeeping failed", error=str(exc))

    def _report_recovered(self, recovered: list[tuple[Path, int, int]]) -> None:
        for final, rows, dropped in recovered:
            logs.event(
                log,
                logging.WARNING,
                f"recovered a {self.what} segment left open by a stopped writer",
                segment=str(final),
                rows=rows,
                dropped_bytes=dropped,
            )
            self._hooks.segment(final)

    async def close(self) -> None:
        """Write what is pending, finish the live segment and wait for the worker to be done;
        `closed` says whether the segment was finished."""
        while self._draining is not None:
            await asyncio.shield(self._draining)
        fd, path = self._fd, self._path
        self._fd = self._path = None
        finishing = (
            self._submit(segments.finish, fd, path) if fd is not None and path is not None else None
        )
        await asyncio.to_thread(self._worker.shutdown, True)
        self.closed = finishing is None or finishing.exception() is None


class PredictionLog(SegmentLog):
    """The prediction log: one `LogLine` per answered row, of `model` unless the caller names
    another (a canary's, a shadow's)."""

    def __init__(
        self,
        directory: Path | str,
        model: Mapping[str, str],
        rotate_rows: int,
        rotate_bytes: int,
        rotate_seconds: float,
        fsync_seconds: float = 1.0,
        hooks: Hooks | None = None,
    ) -> None:
        super().__init__(directory, rotate_rows, rotate_bytes, rotate_seconds, fsync_seconds, hooks)
        self._model = LoggedModel(**model)
        self._encoder = msgspec.json.Encoder()

    async def append(
        self, answered: Answered, model: LoggedModel | None = None, role: str = PRIMARY
    ) -> None:
        """Return once the answered rows are written; LogUnavailable if they cannot be."""
        if self.unavailable is not None:
            raise LogUnavailable(self.unavailable)
        data = encode(self._encoder, answered, model or self._model, role)
        await self.append_encoded(data, len(answered.rows))
