"""An app + ServeConfig in; uvicorn serving until SIGTERM or SIGINT, then a drain; an exit status out.

On the first signal the server stops accepting connections, lets in-flight requests finish (up to
`graceful_timeout` seconds), then the app's lifespan finishes the prediction log's live segment. A
second signal shortens the drain: in-flight requests are cut off at once (they get a 503 if nothing
was sent yet), but the log is still closed properly; uvicorn's own second-Ctrl-C "force exit" would
skip the lifespan and leave the segment open. Every answered row is in the log before its answer
goes out, so a stop never loses one; the exit status says whether the stop was clean:

    0  drained: every request that arrived was answered
    1  requests were cut off before their answer (the count is logged), or the log did not close

uvicorn would re-raise the signal that stopped it (exit status -15/143 as if killed); here the
status above is returned instead, which containers and supervisors read as it is meant.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator
from types import FrameType

import uvicorn

from modelops.serve import logs
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
        # A second signal: stop waiting for in-flight requests, but never skip the lifespan.
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for task in list(self.server_state.tasks):
            task.cancel()


def serve(app: RequestObserver, config: ServeConfig) -> int:
    server = _DrainingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,  # logs.configure made every logger, uvicorn's too, write JSON lines
            access_log=False,  # the app writes its own access lines, with request id and model version
            timeout_graceful_shutdown=config.graceful_timeout,
            lifespan="on",
            server_header=False,
        )
    )
    server.run()
    service = app.state.service
    closed = service.log is not None and service.log.closed
    rows = service.log.rows_written if service.log is not None else 0
    if app.cut_off or not closed:
        logs.event(
            log,
            logging.ERROR,
            "stopped before every request was answered",
            cut_off_requests=app.cut_off,
            log_closed=closed,
            answered_rows_logged=rows,
        )
        return 1
    return 0
