"""Faults injected into real `modelops serve` processes under load: every 200 a client saw is in the
prediction log, whatever happened to the process or its log directory.

SIGKILL mid-load (several times), Ctrl-C twice, the log directory deleted, the disk full (a real
tmpfs in a mount namespace of the server's own), and two servers sharing one directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_tool

from .conftest import Trained, segment_lines, start_server

ROWS = 20  # per request: enough that the log has real work while the load runs


@pytest.fixture(autouse=True)
def no_server_left_behind() -> Iterator[None]:
    """A failing test must not leave its server running: kill every child still alive."""
    yield
    for pid in _children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
            if int(fields["PPid"]) == me and "modelops.cli" in _cmdline(status.parent):
                found.append(int(status.parent.name))
    return found


def _cmdline(proc: Path) -> str:
    return proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def logged_rows(log_dir: Path) -> Counter[str]:
    """Rows per request id in every segment, finished or still open (a reader after a crash)."""
    return Counter(line["request_id"] for line in segment_lines(log_dir, "predictions"))


class Load:
    """Clients posting predict requests (or, with `path` and `body`, others) until stopped;
    remembers every answer's status. `body(request_id, i)` is the i-th body a client sends; by
    default ROWS of `records`."""

    def __init__(
        self,
        url: str,
        records: list[dict[str, Any]],
        clients: int = 6,
        name: str = "c",
        path: str = "/v1/predict",
        body: Callable[[str, int], dict[str, Any]] | None = None,
    ) -> None:
        self.url, self.records, self.name, self.path = url, records, name, path
        self.body = body or self._instances
        self.answers: list[tuple[int, str, int]] = []  # status, request id, rows
        self.failures: list[str] = []  # connection-level: refused, reset, timed out
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                request_id = f"{self.name}{k}-{i}"
                body = self.body(request_id, k * 97 + i * ROWS)
                try:
                    r = http.post(self.path, json=body, headers={"X-Request-ID": request_id})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(type(exc).__name__)
                    time.sleep(0.01)
                    continue
                with self._lock:
                    self.answers.append((r.status_code, request_id, ROWS))

    def _instances(self, request_id: str, i: int) -> dict[str, Any]:
        start = i % (len(self.records) - ROWS)
        return {"instances": self.records[start : start + ROWS]}

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_for(self, answered: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for a in self.answers if a[0] == 200) < answered:
            assert time.monotonic() < deadline, f"only {len(self.answers)} answers"
            time.sleep(0.02)

    def ok(self) -> dict[str, int]:
        return {request_id: rows for status, request_id, rows in self.answers if status == 200}

    def statuses(self) -> Counter[int]:
        return Counter(status for status, _, _ in self.answers)


def assert_every_200_logged(load: Load, log_dir: Path) -> None:
    logged = logged_rows(log_dir)
    missing = {rid: n for rid, n in load.ok().items() if logged.get(rid) != n}
    assert not missing, f"{len(missing)} of {len(load.ok())} answered requests not (fully) logged"


@pytest.mark.parametrize("run", range(3))
def test_sigkill_under_load_loses_no_answered_row(
    trained: Trained, tmp_path: Path, run: int
) -> None:
    server = start_server(trained.bundle_dir, tmp_path)
    with Load(server.url, trained.records()) as load:
        load.wait_for(50 + 150 * run)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    assert load.statuses()[200] >= 50
    assert_every_200_logged(load, server.log_dir)
    assert list(server.log_dir.glob("*.jsonl.open"))  # the killed server's live segment

    # The next server on the directory finishes the segment at once, rows intact.
    restarted = start_server(trained.bundle_dir, tmp_path / "again", log_dir=server.log_dir)
    assert restarted.stop() == 0
    assert not list(server.log_dir.glob("*.jsonl.open"))
    assert_every_200_logged(load, server.log_dir)


def test_ctrl_c_twice_cuts_the_drain_short_without_a_500_or_a_lost_row(
    trained: Trained, tmp_path: Path
) -> None:
    server = start_server(trained.bundle_dir, tmp_path, "--graceful-timeout", "60")
    with Load(server.url, trained.records(), clients=12) as load:
        load.wait_for(100)
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        server.process.send_signal(signal.SIGINT)
        status = server.process.wait(timeout=60)
    statuses = load.statuses()
    assert statuses[500] == 0, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert_every_200_logged(load, server.log_dir)
    assert not list(server.log_dir.glob("*.jsonl.open"))  # the log was closed all the same
    stopped = [
        e for e in server.logs() if e["message"] == "stopped before every request was answered"
    ]
    if stopped:  # requests were in flight at the second signal: said, and not a clean exit
        assert status == 1 and stopped[0]["cut_off_requests"] >= 1
    else:
        assert status == 0


def test_a_deleted_log_directory_gets_503_until_the_log_can_write_again(
    trained: Trained, tmp_path: Path
) -> None:
    server = start_server(trained.bundle_dir, tmp_path)
    records = trained.records()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/predict", json={"instances": records[:5]}).status_code == 200
        shutil.rmtree(server.log_dir)
        refused = http.post("/v1/predict", json={"instances": records[:5]})
        assert refused.status_code == 503
        assert "prediction log cannot be written" in refused.json()["errors"][0]["message"]
        metrics = http.get("/metrics").text
        assert "modelops_prediction_log_errors_total 1.0" in metrics
        wait_until(lambda: http.get("/health/ready").status_code == 200)  # recovers on its own
        with Load(server.url, records) as load:
            load.wait_for(30)
    assert server.stop() == 0
    assert load.statuses()[200] >= 30
    assert_every_200_logged(load, server.log_dir)


def test_a_full_disk_gets_503_and_not_ready_until_space_returns(
    trained: Trained, tmp_path: Path
) -> None:
    unshare = require_tool("unshare")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    # A real 1 MiB filesystem the server alone sees, in a mount namespace of its own.
    prefix = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c"]
    mount = f'mount -t tmpfs -o size=1m none {mount_point} && exec "$0" "$@"'
    server = start_server(
        trained.bundle_dir, tmp_path, prefix=[*prefix, mount], log_dir=mount_point / "log"
    )
    seen = Path(f"/proc/{server.process.pid}/root") / str(mount_point).lstrip("/")
    with Load(server.url, trained.records(), clients=4) as load:
        load.wait_for(20)
        with filled(seen / "filler"):
            wait_until(lambda: load.statuses()[503] >= 5)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                ready = http.get("/health/ready")
                assert ready.status_code == 503
                assert "No space left on device" in ready.json()["reason"]
            answered_while_full = load.statuses()[200]
        wait_until(lambda: load.statuses()[200] > answered_while_full + 20)
    # Read while the server runs: its filesystem goes with its mount namespace.
    assert_every_200_logged(load, seen / "log")
    assert server.stop() == 0


def test_two_servers_on_one_directory_never_touch_each_others_live_segment(
    trained: Trained, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    first = start_server(
        trained.bundle_dir, tmp_path / "a", "--log-rotate-seconds", "3600", log_dir=shared
    )
    records = trained.records()
    with Load(first.url, records, clients=2, name="a") as load_first:
        load_first.wait_for(10)
        second = start_server(
            trained.bundle_dir, tmp_path / "b", "--log-rotate-seconds", "1", log_dir=shared
        )
        with Load(second.url, records, clients=2, name="b") as load_second:
            load_second.wait_for(10)
            time.sleep(2.5)  # the second server rotates, ticks and recovers meanwhile
            [live] = [p for p in shared.glob("*.jsonl.open") if f"-{first.process.pid}-" in p.name]
        load_first.wait_for(load_first.statuses()[200] + 10)
    assert live.exists()  # still the first server's, still being written
    assert first.stop() == 0 and second.stop() == 0
    assert_every_200_logged(load_first, shared)
    assert_every_200_logged(load_second, shared)
    for server in (first, second):
        assert not [e for e in server.logs() if e["level"] == "error"], server.logs()


@contextmanager
def filled(path: Path) -> Iterator[None]:
    """Fill the filesystem holding `path` to the last byte, until the block ends."""
    with open(path, "wb", buffering=0) as f, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            f.write(b"\0" * 4096)
    try:
        yield
    finally:
        path.unlink()


def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
