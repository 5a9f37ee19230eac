"""Answered rows in (off the request path); rotating JSON-lines segments the drift stage reads out.

The request handler hands each answered batch to a `Dispatcher`: a thread behind a bounded queue
that passes it to every `Observer` in turn. `PredictionLog` is one observer; metrics are another;
a live drift window can be a third without touching the request path.

Segments are `predictions-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl` in the configured directory.
A segment being written carries an extra `.open` suffix and is renamed when rotated (by rows,
bytes or age) or closed, so a reader that takes only `*.jsonl` never sees half a segment. One line
per answered row:

    {"timestamp": "<ISO-8601 UTC>", "request_id": "...", "model": {"name": ..., "version": ...},
     "inputs": {<feature>: value|null, ...}, "output": {"label": ..., "probabilities": {...}}}
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from modelops.serve import logs

SUFFIX = ".jsonl"
OPEN_SUFFIX = ".open"
FLUSH_SECONDS = 1.0
# The writer thread runs at the lowest CPU priority, so it uses what the request path leaves. On two
# cores, at the default priority its ~1 ms per 1000-row request competed with the next request's
# OpenMP workers, and those requests ran ~20% slower than with no log at all; at niceness 19 they
# ran as fast as without it (interleaved A/B runs). If the writer ever falls behind, the bounded
# queue turns that into 503s, not lost rows.
WRITER_NICENESS = 19

log = logging.getLogger(logs.SERVER)


class Answered(NamedTuple):
    """One request's rows as answered with a 200."""

    timestamp: float  # seconds since the epoch, when the answer was computed
    request_id: str
    rows: list[tuple[Any, ...]]  # inputs in schema order
    proba: npt.NDArray[np.float64]
    labels: list[Any]
    instances: Sequence[Any]  # each encodes to the row's `inputs` object (the request's Structs)
    predictions: Sequence[Any]  # each encodes to the row's `output` object (the response's)


class _Line(msgspec.Struct, frozen=True):
    timestamp: str
    request_id: str
    model: dict[str, str]
    inputs: Any
    output: Any


class Observer(Protocol):
    def observe(self, answered: Answered) -> None: ...

    def tick(self, now: float) -> None: ...

    def close(self) -> None: ...


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class PredictionLog:
    """Writes answered rows as JSON lines into segments it rotates by rows, bytes and age."""

    def __init__(
        self,
        directory: Path | str,
        model: dict[str, str],
        rotate_rows: int,
        rotate_bytes: int,
        rotate_seconds: float,
        on_rows: Callable[[int], None] = lambda n: None,
        on_segment: Callable[[Path], None] = lambda p: None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._model = dict(model)
        self._rotate_rows = rotate_rows
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._on_rows = on_rows
        self._on_segment = on_segment
        self._encoder = msgspec.json.Encoder()
        self._pid = os.getpid()
        self._seq = 0
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._rows = 0
        self._bytes = 0
        self._dirty = False
        self._flushed = 0.0

    def observe(self, answered: Answered) -> None:
        timestamp, request_id, model = iso_utc(answered.timestamp), answered.request_id, self._model
        # The request's own Structs and the response's predictions encode straight to the line's
        # `inputs` and `output`: no per-row dicts to build.
        lines = [
            _Line(timestamp, request_id, model, inputs, output)
            for inputs, output in zip(answered.instances, answered.predictions, strict=True)
        ]
        data = self._encoder.encode_lines(lines)
        handle = self._file if self._file is not None else self._open(answered.timestamp)
        handle.write(data)
        self._rows += len(lines)
        self._bytes += len(data)
        self._dirty = True
        self._on_rows(len(lines))
        if self._rows >= self._rotate_rows or self._bytes >= self._rotate_bytes:
            self._finish()

    def tick(self, now: float) -> None:
        if self._file is None:
            return
        if now - self._opened >= self._rotate_seconds:
            self._finish()
        elif self._dirty and now - self._flushed >= FLUSH_SECONDS:
            # Buffered writes reach the OS about once a second, not once a request.
            self._file.flush()
            self._dirty = False
            self._flushed = now

    def close(self) -> None:
        self._finish()

    def _open(self, now: float) -> IO[bytes]:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        while True:
            self._seq += 1
            name = f"predictions-{stamp}-{self._pid}-{self._seq:06d}{SUFFIX}"
            final = self.directory / name
            path = final.with_name(name + OPEN_SUFFIX)
            # A restart in the same second with the same pid (pid 1 in a container) must not
            # reuse a name; "x" mode refuses an existing file.
            if final.exists():
                continue
            try:
                handle = open(path, "xb", buffering=1 << 20)  # noqa: SIM115 (kept open across calls)
            except FileExistsError:
                continue
            self._file, self._path, self._opened = handle, path, now
            self._rows = self._bytes = 0
            return handle

    def _finish(self) -> None:
        """Flush, fsync and rename the open segment to its final name."""
        handle, path = self._file, self._path
        if handle is None or path is None:
            return
        self._file = self._path = None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
        final = path.with_name(path.name[: -len(OPEN_SUFFIX)])
        os.replace(path, final)
        _fsync_dir(path.parent)
        self._on_segment(final)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_STOP = object()


def _lower_priority() -> None:
    # On Linux a thread id names just that thread for setpriority; elsewhere it could name an
    # unrelated process, so other systems keep the default priority.
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
        except OSError as exc:
            log.warning("prediction log writer keeps its priority: %s", exc)


class Dispatcher:
    """A thread behind a bounded queue that hands every answered batch to each observer, in order.

    `offer` never blocks the event loop: it says False when the queue is full, and the caller
    decides (the server answers 503 rather than give a 200 it could not log).
    """

    def __init__(
        self,
        observers: Sequence[Observer],
        max_batches: int,
        on_error: Callable[[], None] = lambda: None,
        on_depth: Callable[[int], None] = lambda n: None,
        tick_seconds: float = 1.0,
    ) -> None:
        self._observers = list(observers)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_batches)
        self._on_error = on_error
        self._on_depth = on_depth
        self._tick = tick_seconds
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def offer(self, answered: Answered) -> bool:
        if self._closed:
            return False
        try:
            self._queue.put_nowait(answered)
        except queue.Full:
            return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Process everything already offered, then close the observers (segments renamed)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)  # blocks only while the writer frees a slot
        self._thread.join(timeout)

    def _run(self) -> None:
        _lower_priority()
        while True:
            try:
                item = self._queue.get(timeout=self._tick)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                self._each("observe", item)
            self._each("tick", time.time())
            self._on_depth(self._queue.qsize())
        self._each("close")
        self._on_depth(0)

    def _each(self, method: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(*args)
            except Exception:
                # A full disk must not stop the other observers or kill the thread; it is counted
                # and logged loudly, never passed over in silence.
                self._on_error()
                log.exception("observer %s.%s failed", type(observer).__name__, method)
