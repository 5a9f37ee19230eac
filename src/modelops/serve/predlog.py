"""Answered rows in (off the request path); rotating JSON-lines segments the drift stage reads out.

The request handler hands each answered batch to a `Dispatcher`: a thread behind a bounded queue
that passes it to every `Observer` in turn. `PredictionLog` is one observer; metrics are another;
a live drift window can be a third without touching the request path.

Segments are `predictions-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl` in the configured directory.
A segment being written carries an extra `.open` suffix and is renamed when rotated (by rows,
bytes or age) or closed, so a reader that takes only `*.jsonl` never sees half a segment. A process
that was killed (SIGKILL, OOM, power loss) leaves its `.open` segment behind; a writer that finds
one older than any live writer keeps a segment open (`rotate_seconds` + `ABANDONED_GRACE`) cuts it
back to its last whole line and renames it, so those rows still reach the drift stage. One line
per answered row, as `modelops.logline.LogLine` defines it.
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

from modelops.logline import OPEN_SUFFIX, SEGMENT_SUFFIX, LoggedModel, LogLine
from modelops.serve import logs

FLUSH_SECONDS = 1.0
# The writer thread runs at the lowest CPU priority, so it uses what the request path leaves. On two
# cores, at the default priority its ~1 ms per 1000-row request competed with the next request's
# OpenMP workers, and those requests ran ~20% slower than with no log at all; at niceness 19 they
# ran as fast as without it (interleaved A/B runs). If the writer ever falls behind, the bounded
# queue turns that into 503s, not lost rows.
WRITER_NICENESS = 19
# A writer closes its segment within `rotate_seconds` of opening it (checked every tick, about once
# a second); an `.open` segment this much older than that has no writer left.
ABANDONED_GRACE = 300.0
RECOVERY_SECONDS = 60.0  # how often a running writer looks for abandoned segments
_CHUNK = 1 << 20

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
        self._model = LoggedModel(**model)
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
        self._recovered_at = time.time()
        self.recover(self._recovered_at)

    def observe(self, answered: Answered) -> None:
        timestamp, request_id, model = iso_utc(answered.timestamp), answered.request_id, self._model
        # The request's own Structs and the response's predictions encode straight to the line's
        # `inputs` and `output`: no per-row dicts to build.
        lines = [
            LogLine(timestamp, request_id, model, inputs, output)
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
        if now - self._recovered_at >= RECOVERY_SECONDS:
            self._recovered_at = now
            self.recover(now)
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

    def recover(self, now: float) -> list[Path]:
        """Finish every `.open` segment that no writer can still be writing; return their new paths."""
        cutoff = now - self._rotate_seconds - ABANDONED_GRACE
        recovered = []
        for path in sorted(self.directory.glob(f"predictions-*{SEGMENT_SUFFIX}{OPEN_SUFFIX}")):
            opened = _opened_at(path.name)
            if path == self._path or opened is None or opened >= cutoff:
                continue
            try:
                final, rows, dropped = _seal(path)
            except FileNotFoundError:
                continue  # another writer sharing the directory got there first
            except OSError as exc:  # a stale segment must never stop the server from logging
                logs.event(
                    log,
                    logging.ERROR,
                    "cannot recover a prediction log segment",
                    segment=str(path),
                    error=str(exc),
                )
                continue
            logs.event(
                log,
                logging.WARNING,
                "recovered a prediction log segment left open by a stopped writer",
                segment=str(final or path),
                rows=rows,
                dropped_bytes=dropped,
            )
            if final is not None:
                recovered.append(final)
                self._on_segment(final)
        return recovered

    def _open(self, now: float) -> IO[bytes]:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
        while True:
            self._seq += 1
            name = f"predictions-{stamp}-{self._pid}-{self._seq:06d}{SEGMENT_SUFFIX}"
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


def _opened_at(name: str) -> float | None:
    """The UTC second a segment was opened, from its name; None for a name this log did not write."""
    try:
        stamp = name.split("-")[1]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    except (IndexError, ValueError):
        return None


def _seal(path: Path) -> tuple[Path | None, int, int]:
    """Cut an abandoned segment back to its last whole line and give it its final name.

    Returns the final path (None when not one whole line was left and the file was removed), the
    rows kept and the bytes of a torn last line that were dropped.
    """
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        end = size
        while end > 0:  # find the last newline, reading backwards a chunk at a time
            start = max(0, end - _CHUNK)
            f.seek(start)
            cut = f.read(end - start).rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        rows = 0
        f.seek(0)
        while f.tell() < end:
            rows += f.read(min(_CHUNK, end - f.tell())).count(b"\n")
        if end < size:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    if end == 0:
        path.unlink()
        return None, 0, size
    final = path.with_name(path.name[: -len(OPEN_SUFFIX)])
    if final.exists():  # never overwrite a finished segment
        raise FileExistsError(f"{final}: exists; {path.name} left as it is")
    os.replace(path, final)
    _fsync_dir(path.parent)
    return final, rows, size - end


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
