"""Log records in; one JSON object per line out (stderr), for the server and uvicorn alike.

A record's `fields` extra (a dict) is merged into the object, so an access line carries request id,
status and model version as keys a log pipeline can index, not as text to parse.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import msgspec

ACCESS = "modelops.access"
SERVER = "modelops.serve"

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(out).decode()


def timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created * 1000) % 1000:03d}Z"
    )


class AccessLog:
    """One JSON line per request on stderr, in the shape JsonFormatter gives every other record
    (ts, level, logger, message, then the fields). The logging module's record, handler and
    formatter machinery, and a write(2) per line, cost more per request than the line itself, so
    lines are encoded directly and written together at each `flush` (twice a second, and when
    PENDING_BYTES have gathered), in chunks of whole lines no larger than an atomic pipe write, so
    other writers' lines never land inside one."""

    PENDING_BYTES = 1 << 16
    CHUNK = 4096  # PIPE_BUF on Linux: a write this size or smaller to a pipe is never interleaved

    def __init__(self, enabled: bool, fd: int = 2) -> None:
        self.enabled = enabled and logging.getLogger(ACCESS).isEnabledFor(logging.INFO)
        self._fd = fd
        self._second = -1
        self._prefix = ""
        self._lines: list[bytes] = []
        self._bytes = 0

    def write(self, **fields: Any) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # the date part changes once a second
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = _encoder.encode(
            {
                "ts": f"{self._prefix}.{int(now * 1000) % 1000:03d}Z",
                "level": "info",
                "logger": ACCESS,
                "message": "request",
                **fields,
            }
        )
        self._lines.append(line + b"\n")
        self._bytes += len(line) + 1
        if self._bytes >= self.PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        lines, self._lines, self._bytes = self._lines, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > self.CHUNK:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except OSError:
                return  # stderr is gone (a closed pipe): access lines are not worth a crash


def configure(level: str = "info") -> None:
    """Route the root logger (and through it uvicorn's) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields})
