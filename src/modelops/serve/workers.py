"""Several uvicorn workers on one machine: what they share, and the app each of them builds.

`modelops serve --workers N` binds one socket and lets uvicorn's supervisor run N worker processes
on it (serve/runner.py). Each worker loads and verifies the bundle itself, writes its own
prediction-log segments (named by its pid, locked by it), and keeps its own live drift window.
What must be one answer for the whole server is shared through a directory the supervisor makes:

- Prometheus metrics: prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`); every
  worker's counters and histograms are summed at scrape, whichever worker answers it.
- Live drift: each worker publishes each model's window's bin counts there once a second
  (`SharedCounts`); a snapshot (`GET /v1/drift`, the drift gauges) adds every live worker's counts,
  which is sound because bin counts add: the report is over the last `drift.window` rows of each
  worker.
- Canary shares: a change (PUT /admin/canary to any worker) is written there, and every worker
  reads it at its next tick (serve/routing.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from modelops.serve import logs
from modelops.serve.config import ServeConfig, build, env_name
from modelops.serve.observe import RequestObserver
from modelops.types import IntArray

BUNDLE_ENV = "MODELOPS_SERVE_WORKER_BUNDLE"  # the bundle directory, for the workers' app factory
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
_DRIFT = re.compile(r"^drift-(\d+)-(\d+)\.npz$")  # drift-<model index>-<pid>.npz


def environment(bundle_dir: Path, config: ServeConfig, shared: Path) -> dict[str, str]:
    """The variables a worker builds the same app from: every setting, the bundle, the shared
    directory."""
    env = {BUNDLE_ENV: str(bundle_dir), MULTIPROC_ENV: str(shared)}
    for name in config.__struct_fields__:
        value = getattr(config, name)
        if isinstance(value, tuple):
            env[env_name(name)] = ",".join(value)  # sources hold no commas (serve/sources.py)
        elif value is not None:
            env[env_name(name)] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def app() -> RequestObserver:
    """uvicorn's app factory in each worker: the app `environment` describes."""
    from modelops.serve.app import create_app

    config = build({}, os.environ)
    logs.configure(config.log_level)
    forget_dead_workers(Path(os.environ[MULTIPROC_ENV]))
    return create_app(Path(os.environ[BUNDLE_ENV]), config)


def multiprocess() -> Path | None:
    """The shared directory when this process is one of several workers."""
    directory = os.environ.get(MULTIPROC_ENV)
    return Path(directory) if directory else None


def forget_dead_workers(directory: Path) -> None:
    """Drop what workers that are gone left behind: their live gauges (a dead worker's 'not
    ready' would hold the server's readiness gauge at 0) and their drift counts. Their counters
    stay: counts of answered requests do not go away with the process."""
    from prometheus_client import multiprocess as prometheus_multiprocess

    pids = {int(m[1]) for p in directory.glob("*_*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}
    for pid in pids:
        if not _alive(pid):
            prometheus_multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    for path in [*directory.glob("drift-*.npz"), *directory.glob("ready-*")]:
        m = re.search(r"-(\d+)(\.npz)?$", path.name)
        if m and not _alive(int(m[1])):
            path.unlink(missing_ok=True)


def mark_ready(directory: Path) -> None:
    """This worker's model is loaded and verified."""
    (directory / f"ready-{os.getpid()}").touch()


def all_ready(directory: Path, expected: int) -> bool:
    """Whether `expected` live workers have marked themselves ready: a load balancer must not send
    traffic while a worker that would take some of it is still loading."""
    pids = [int(p.name.removeprefix("ready-")) for p in directory.glob("ready-*")]
    return sum(1 for pid in pids if _alive(pid)) >= expected


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedCounts:
    """This worker's live-drift window counts of one model (the `model`-th the server serves),
    published to the shared directory; the sum over every live worker's."""

    def __init__(self, directory: Path, model: int = 0) -> None:
        self.directory = directory
        self.model = model
        self.path = directory / f"drift-{model}-{os.getpid()}.npz"

    def publish(self, counts: IntArray, rows: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, counts=counts, rows=np.int64(rows))
        os.replace(tmp, self.path)

    def total(self, counts: IntArray, rows: int) -> tuple[IntArray, int, int]:
        """`counts` and `rows` (this worker's, current) plus every other live worker's last ones,
        and how many workers that is."""
        total, n, workers = counts.copy(), rows, 1
        for path in self.directory.glob(f"drift-{self.model}-*.npz"):
            m = _DRIFT.match(path.name)
            if path == self.path or m is None or not _alive(int(m[2])):
                continue
            try:
                with np.load(path) as published:
                    other = published["counts"]
                    if other.shape == total.shape:
                        total += other
                        n += int(published["rows"])
                        workers += 1
            except FileNotFoundError:
                continue  # its worker stopped meanwhile
        return total, n, workers
