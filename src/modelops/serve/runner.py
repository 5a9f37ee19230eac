"""An app + ServeConfig in; uvicorn serving until SIGTERM or SIGINT, then a drain; an exit status out.

On the first signal the server stops accepting connections, lets in-flight requests finish (up to
`graceful_timeout` seconds), then the app's lifespan finishes the prediction log's live segment. A
second SIGINT (Ctrl-C twice) shortens the drain: in-flight requests are cut off at once (they get a
503 if nothing was sent yet), but the log is still closed properly; uvicorn's own second-Ctrl-C
"force exit" would skip the lifespan and leave the segment open. With several workers
(`serve_workers`) each worker does the same, and the supervisor's status is theirs. Every answered
row is in the log before its answer goes out, so a stop never loses one; the exit status says
whether the stop was clean:

    0  drained: every request that arrived was answered
    1  requests were cut off before their answer (the count is logged), or the log did not close

uvicorn would re-raise the signal that stopped it (exit status -15/143 as if killed); here the
status above is returned instead, which containers and supervisors read as it is meant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any
from unittest import mock

import uvicorn
from uvicorn.supervisors import multiprocess as uvicorn_workers

from modelops.serve import logs, workers
from modelops.serve.config import ServeConfig
from modelops.serve.observe import RequestObserver

log = logging.getLogger(logs.SERVER)


class _DrainingServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # The signal led to a drain and a closed log: the exit status says the rest.
            self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        if sig != signal.SIGINT:
            return  # e.g. a supervisor's SIGTERM after the terminal's Ctrl-C: keep draining
        # A second Ctrl-C: stop waiting for in-flight requests, but never skip the lifespan.
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for task in list(self.server_state.tasks):
            task.cancel()


def _uvicorn_config(app: Any, config: ServeConfig, **more: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,  # logs.configure made every logger, uvicorn's too, write JSON lines
        access_log=False,  # the app writes its own access lines, with request id and model version
        timeout_graceful_shutdown=config.graceful_timeout,
        lifespan="on",
        server_header=False,
        **more,
    )


def serve(app: RequestObserver, config: ServeConfig) -> int:
    server = _DrainingServer(_uvicorn_config(app, config))
    server.run()
    return exit_status(app)


def exit_status(app: RequestObserver) -> int:
    """0 for a clean stop; 1, with a log line saying what, when requests were cut off or the
    prediction log or the feedback log did not close."""
    service = app.state.service
    closed = service.log is not None and service.log.closed
    feedback = service.feedback_log
    feedback_closed = feedback is not None and feedback.closed
    if app.cut_off or not closed or not feedback_closed:
        logs.event(
            log,
            logging.ERROR,
            "stopped before every request was answered",
            cut_off_requests=app.cut_off,
            log_closed=closed,
            answered_rows_logged=service.log.rows_written if service.log is not None else 0,
            feedback_log_closed=feedback_closed,
            outcomes_logged=feedback.rows_written if feedback is not None else 0,
        )
        return 1
    return 0


# --------------------------------------------------------------------------- several workers


class _Worker(uvicorn_workers.Process):
    """uvicorn's worker process, running the draining server and exiting with its status."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _DrainingServer(config=self.config)
        return self._server

    def target(self, sockets: Any = None) -> None:  # runs in the worker process
        super().target(sockets)
        app = self.server.config.loaded_app
        while not isinstance(app, RequestObserver):  # under uvicorn's own middleware
            app = app.app
        status = exit_status(app)
        if status:
            sys.exit(status)


def serve_workers(bundle_dir: Path, config: ServeConfig) -> int:
    """`config.workers` worker processes behind uvicorn's supervisor, on one socket; 0 when every
    worker stopped cleanly. A worker that dies is replaced by the supervisor; its prediction-log
    segment is finished by the next worker that looks (the lock went with the process)."""
    from modelops.serve.app import roster

    roster(
        bundle_dir, config
    )  # every model verified and compatible: refuse at once, not per worker
    shared = Path(tempfile.mkdtemp(prefix="modelops-workers-"))
    os.environ.update(workers.environment(bundle_dir, config, shared))
    uv = _uvicorn_config("modelops.serve.workers:app", config, factory=True, workers=config.workers)
    supervisor: uvicorn_workers.Multiprocess | None = None
    try:
        sock = uv.bind_socket()
        # uvicorn's supervisor makes its workers from its module's Process class; ours drains.
        with mock.patch.object(uvicorn_workers, "Process", _Worker):
            supervisor = uvicorn_workers.Multiprocess(uv, sockets=[sock])
            supervisor.run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    failed = [p.pid for p in supervisor.processes if p.exitcode] if supervisor else []
    if failed:
        logs.event(log, logging.ERROR, "workers did not stop cleanly", pids=failed)
        return 1
    return 0
