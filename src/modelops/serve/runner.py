"""An app + ServeConfig in; uvicorn serving until SIGTERM or SIGINT, then a graceful drain.

uvicorn re-raises the signal that stopped it once shutdown is complete, so a drained server would
exit with status -15/143 as if it had been killed. Here a signal that led to a complete, graceful
shutdown ends the process with status 0; containers and supervisors read that as a clean stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn
from litestar.types import ASGIApp

from modelops.serve.config import ServeConfig


class _DrainingServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # Reached only when serving returned normally, i.e. after the drain completed.
            self._captured_signals.clear()


def serve(app: ASGIApp, config: ServeConfig) -> None:
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
