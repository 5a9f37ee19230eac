"""The service's parts on their own: the prediction log, the background dispatcher, the micro-batcher,
the configuration and the `serve` command's wiring."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.cli import main
from modelops.serve import config as serve_config
from modelops.serve import predlog
from modelops.serve.predictor import Batcher, model_thread
from modelops.serve.predlog import Answered, Dispatcher, PredictionLog

NAMES = ("tenure", "region")


def answered(n: int, request_id: str = "r1", timestamp: float = 1_800_000_000.0) -> Answered:
    rows = [(float(i), None if i % 2 else "north") for i in range(n)]
    proba = np.array([[0.25, 0.75]] * n)
    instances = [dict(zip(NAMES, row, strict=True)) for row in rows]
    outputs = [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}}] * n
    return Answered(timestamp, request_id, rows, proba, [1] * n, instances, outputs)


def make_log(directory: Path, **rotate: Any) -> PredictionLog:
    limits = {"rotate_rows": 1000, "rotate_bytes": 1 << 30, "rotate_seconds": 3600.0, **rotate}
    return PredictionLog(directory, {"name": "churn", "version": "v1"}, **limits)


def test_log_lines_have_the_agreed_shape(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.observe(answered(2))
    [open_segment] = list(tmp_path.iterdir())
    assert open_segment.name.endswith(".jsonl.open")  # readers skip it until it is complete
    log.close()
    [segment] = list(tmp_path.iterdir())
    assert re.fullmatch(r"predictions-20270115T080000-\d+-000001\.jsonl", segment.name)
    lines = [json.loads(line) for line in segment.read_text().splitlines()]
    assert lines[1] == {
        "timestamp": "2027-01-15T08:00:00.000000Z",
        "request_id": "r1",
        "model": {"name": "churn", "version": "v1"},
        "inputs": {"tenure": 1.0, "region": None},
        "output": {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
    }


def test_segments_rotate_by_rows_bytes_and_age(tmp_path: Path) -> None:
    by_rows = make_log(tmp_path / "rows", rotate_rows=3)
    for i in range(4):
        by_rows.observe(answered(2, f"r{i}"))  # 2, 4 (rotate), 2, 4 (rotate)
    assert len(list((tmp_path / "rows").glob("*.jsonl"))) == 2

    by_bytes = make_log(tmp_path / "bytes", rotate_bytes=4096)
    by_bytes.observe(answered(40))
    by_bytes.observe(answered(1))
    assert len(list((tmp_path / "bytes").glob("*.jsonl"))) == 1
    assert len(list((tmp_path / "bytes").glob("*.jsonl.open"))) == 1
    by_bytes.close()

    by_age = make_log(tmp_path / "age", rotate_seconds=60)
    by_age.observe(answered(1, timestamp=1000.0))
    by_age.tick(1030.0)
    assert not list((tmp_path / "age").glob("*.jsonl"))
    by_age.tick(1061.0)
    assert len(list((tmp_path / "age").glob("*.jsonl"))) == 1
    by_age.tick(2000.0)  # nothing open, nothing written: no empty segments
    assert len(list((tmp_path / "age").iterdir())) == 1


def test_a_restart_never_reuses_a_segment_name(tmp_path: Path) -> None:
    first = make_log(tmp_path)
    first.observe(answered(1))
    first.close()
    second = make_log(tmp_path)  # same pid, same second: pid 1 in a container
    second.observe(answered(1))
    second.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_a_segment_left_open_by_a_killed_writer_is_recovered_to_its_last_whole_line(
    tmp_path: Path,
) -> None:
    # A real writer process killed with SIGKILL mid-stream: its 1 MiB buffer reached the file, the
    # rest of its rows (and the end of a line, most likely) did not.
    hours_ago = time.time() - 7200
    script = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_parts import answered, make_log
log = make_log(Path({str(tmp_path)!r}), rotate_rows=10**9)
for i in range(100):
    log.observe(answered(100, f"r{{i}}", timestamp={hours_ago}))
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [left] = list(tmp_path.iterdir())
    assert left.name.endswith(".jsonl.open")
    size = left.stat().st_size
    assert size > 0

    restarted = make_log(tmp_path, rotate_seconds=300)  # the next server on this directory
    [segment] = list(tmp_path.iterdir())
    assert segment.name == left.name.removesuffix(".open")
    data = segment.read_bytes()
    assert data.endswith(b"\n") and len(data) > size - 1000  # at most a torn line was cut
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line["request_id"] for line in lines[:100]] == ["r0"] * 100
    restarted.close()


def test_recovery_leaves_live_segments_alone_and_runs_while_serving(tmp_path: Path) -> None:
    now = time.time()

    def open_segment(opened: float, seq: int, content: bytes) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(opened))
        path = tmp_path / f"predictions-{stamp}-999999-{seq:06d}.jsonl.open"
        path.write_bytes(content)
        return path

    young = open_segment(now - 60, 1, b'{"a": 1}\n')  # its writer may still be running
    torn_only = open_segment(now - 3600, 2, b'{"a": ')  # not one whole line: removed
    foreign = tmp_path / "notes.jsonl.open"
    foreign.write_bytes(b"x")
    log = make_log(tmp_path, rotate_seconds=300)
    assert young.exists() and foreign.exists() and not torn_only.exists()
    assert not list(tmp_path.glob("*.jsonl"))

    log.observe(answered(1, timestamp=now))
    [own] = list(tmp_path.glob(f"*-{os.getpid()}-*.open"))
    later = now + 300 + predlog.ABANDONED_GRACE + predlog.RECOVERY_SECONDS
    log.tick(later - 1)  # own segment is rotated by age here, then never touched by recovery
    log.tick(later)
    assert not young.exists()
    assert young.with_name(young.name.removesuffix(".open")).read_bytes() == b'{"a": 1}\n'
    assert foreign.exists() and not own.exists()
    log.close()


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[str] = []
        self.closed = False
        self.fail = fail

    def observe(self, batch: Answered) -> None:
        if self.fail:
            raise OSError("disk full")
        self.seen.append(batch.request_id)

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_dispatcher_hands_every_batch_to_every_observer_then_closes_them() -> None:
    broken, good = Recorder(fail=True), Recorder()
    errors: list[int] = []
    dispatcher = Dispatcher([broken, good], max_batches=100, on_error=lambda: errors.append(1))
    dispatcher.start()
    for i in range(50):
        assert dispatcher.offer(answered(1, f"r{i}"))
    dispatcher.close()
    assert good.seen == [f"r{i}" for i in range(50)]
    assert good.closed and broken.closed
    assert len(errors) == 50  # a failing observer is counted, and does not stop the others
    assert not dispatcher.offer(answered(1))


def test_dispatcher_refuses_work_when_its_queue_is_full() -> None:
    dispatcher = Dispatcher([Recorder()], max_batches=2)  # not started: nothing drains
    assert dispatcher.offer(answered(1))
    assert dispatcher.offer(answered(1))
    assert not dispatcher.offer(answered(1))


# --------------------------------------------------------------------------- micro-batching


class InlineFastPath:
    def numpy_only(self, n_rows: int) -> bool:
        return True


class CountingModel:
    """Stands in for LoadedModel: records each call's rows."""

    fast = InlineFastPath()  # scored on the event loop, like the fast path's small batches

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_proba(self, rows: list[tuple[Any, ...]]) -> np.ndarray:
        self.calls.append(len(rows))
        return np.array([[r[0], 1 - r[0]] for r in rows])


def batcher(
    model: CountingModel, wait: float, max_rows: int = 256, seen: list[float] | None = None
) -> Batcher:
    def on_batch(rows: int, waited: float, scored: float) -> None:
        if seen is not None:
            seen.append(waited)

    return Batcher(model, max_rows, wait, model_thread(), on_batch)  # type: ignore[arg-type]


def test_a_lone_request_is_scored_without_waiting() -> None:
    waited: list[float] = []

    async def run() -> np.ndarray:
        b = batcher(CountingModel(), wait=3600.0, seen=waited)
        b.start()
        with b.arrival() as arrival:
            # Were the batcher to wait for company, this would take an hour.
            result = await asyncio.wait_for(b.submit([(0.5,)], arrival), timeout=30)
        await b.stop()
        return result

    np.testing.assert_array_equal(asyncio.run(run()), [[0.5, 0.5]])
    assert len(waited) == 1 and waited[0] < 3600.0 / 1000  # reported, and nowhere near the bound


def test_requests_already_inside_the_handler_share_one_model_call() -> None:
    model = CountingModel()

    async def one(b: Batcher, value: float, gate: asyncio.Event) -> np.ndarray:
        with b.arrival() as arrival:
            await gate.wait()  # the body is still being read
            return await b.submit([(value,), (value,)], arrival)

    async def run() -> list[np.ndarray]:
        b = batcher(model, wait=3600.0)
        b.start()
        gate = asyncio.Event()
        tasks = [asyncio.create_task(one(b, v / 10, gate)) for v in range(5)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await b.stop()
        return results

    results = asyncio.run(run())
    assert model.calls == [10]
    for v, result in enumerate(results):
        np.testing.assert_allclose(result, [[v / 10, 1 - v / 10]] * 2)


def test_batches_stop_at_the_row_limit() -> None:
    model = CountingModel()

    async def run() -> None:
        b = batcher(model, wait=0.0, max_rows=4)
        arrivals = [b.arrival() for _ in range(3)]
        entered = [a.__enter__() for a in arrivals]
        futures = [asyncio.ensure_future(b.submit([(0.1,)] * 3, a)) for a in entered]
        await asyncio.sleep(0)
        b.start()
        await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
        for a in arrivals:
            a.__exit__(None, None, None)
        await b.stop()

    asyncio.run(run())
    assert model.calls == [3, 3, 3]


def test_a_model_failure_reaches_every_request_in_the_batch() -> None:
    class Broken(CountingModel):
        def predict_proba(self, rows: list[tuple[Any, ...]]) -> np.ndarray:
            raise ValueError("model exploded")

    async def run() -> list[Any]:
        b = batcher(Broken(), wait=0.0)
        b.start()
        arrivals = [b.arrival().__enter__() for _ in range(2)]
        results = await asyncio.gather(
            *(b.submit([(0.1,)], a) for a in arrivals), return_exceptions=True
        )
        await b.stop()
        return results

    assert [str(r) for r in asyncio.run(run())] == ["model exploded"] * 2


# --------------------------------------------------------------------------- configuration + CLI


def test_options_beat_environment_beats_defaults() -> None:
    env = {"MODELOPS_SERVE_PORT": "9001", "MODELOPS_SERVE_BATCH_WAIT_MS": "0.5"}
    config = serve_config.build({"port": 9002, "access_log": False}, env)
    assert (config.port, config.batch_wait_ms, config.access_log) == (9002, 0.5, False)
    assert config.max_instances == serve_config.ServeConfig().max_instances
    assert serve_config.build({}, {"MODELOPS_SERVE_ACCESS_LOG": "false"}).access_log is False


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({}, {"MODELOPS_SERVE_PORT": "eighty"}, "MODELOPS_SERVE_PORT='eighty'"),
        (
            {},
            {"MODELOPS_SERVE_MAX_INSTANCES": "0"},
            "MODELOPS_SERVE_MAX_INSTANCES='0': Expected `int` >= 1",
        ),
        ({"batch_wait_ms": 500.0}, {}, "--batch-wait-ms: Expected `float` <= 100"),
    ],
)
def test_bad_settings_name_where_they_came_from(
    options: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(serve_config.ConfigInvalid, match=re.escape(message)):
        serve_config.build(options, env)


def test_serve_rejects_a_bad_option_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--bundle", str(tmp_path), "--max-instances", "0"]) == 2
    assert "--max-instances: Expected `int` >= 1" in capsys.readouterr().err
