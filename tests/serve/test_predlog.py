"""The prediction log on its own: an append returns only once its rows are in the segment file;
concurrent answers share one write; segments rotate, never reuse a name, are locked by their writer
and recovered only once that writer is gone; a log that cannot write says so and recovers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.logline import PREDICTION_PREFIX
from modelops.serve import segments
from modelops.serve.predlog import Answered, Hooks, LogUnavailable, PredictionLog

NAMES = ("tenure", "region")


def answered(n: int, request_id: str = "r1", timestamp: float = 1_800_000_000.0) -> Answered:
    rows = [(float(i), None if i % 2 else "north") for i in range(n)]
    proba = np.array([[0.25, 0.75]] * n)
    instances = [dict(zip(NAMES, row, strict=True)) for row in rows]
    outputs = [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}}] * n
    return Answered(timestamp, request_id, rows, proba, [1] * n, instances, outputs)


class Recorded:
    """What the log reports through its hooks."""

    def __init__(self) -> None:
        self.writes = 0
        self.rows = 0
        self.segments: list[Path] = []
        self.errors = 0
        self.writable: list[bool] = []

    def hooks(self) -> Hooks:
        def write(seconds: float) -> None:
            self.writes += 1

        def rows(n: int) -> None:
            self.rows += n

        def error() -> None:
            self.errors += 1

        return Hooks(rows, self.segments.append, error, self.writable.append, write)


def make_log(directory: Path, recorded: Recorded | None = None, **rotate: Any) -> PredictionLog:
    limits = {"rotate_rows": 1000, "rotate_bytes": 1 << 30, "rotate_seconds": 3600.0, **rotate}
    hooks = recorded.hooks() if recorded is not None else None
    return PredictionLog(directory, {"name": "churn", "version": "v1"}, hooks=hooks, **limits)


def lines_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_have_the_agreed_shape_and_segments_their_final_name_when_closed(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        log = make_log(tmp_path)
        await log.append(answered(2))
        [open_segment] = list(tmp_path.iterdir())
        assert open_segment.name.endswith(".jsonl.open")  # readers skip it until it is complete
        await log.close()
        assert log.closed

    asyncio.run(run())
    [segment] = list(tmp_path.iterdir())
    assert re.fullmatch(r"predictions-\d{8}T\d{6}-\d+-000001\.jsonl", segment.name)
    assert lines_in(segment)[1] == {
        "timestamp": "2027-01-15T08:00:00.000000Z",
        "request_id": "r1",
        "model": {"name": "churn", "version": "v1"},
        "inputs": {"tenure": 1.0, "region": None},
        "output": {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
    }


def test_an_append_returns_only_once_its_rows_are_in_the_file(tmp_path: Path) -> None:
    async def run() -> None:
        log = make_log(tmp_path)
        for i in range(5):
            await log.append(answered(3, f"r{i}"))
            # No close, no flush: what a reader (or the next server) finds on disk right now.
            [live] = list(tmp_path.glob("*.jsonl.open"))
            assert [line["request_id"] for line in lines_in(live)][-3:] == [f"r{i}"] * 3
        await log.close()

    asyncio.run(run())


def test_requests_answered_together_share_one_write(tmp_path: Path) -> None:
    recorded = Recorded()

    async def run() -> None:
        log = make_log(tmp_path, recorded)
        await asyncio.gather(*(log.append(answered(2, f"r{i}")) for i in range(20)))
        await log.close()

    asyncio.run(run())
    assert recorded.writes == 1 and recorded.rows == 40
    [segment] = list(tmp_path.glob("*.jsonl"))
    assert {line["request_id"] for line in lines_in(segment)} == {f"r{i}" for i in range(20)}


def test_segments_rotate_by_rows_bytes_and_age(tmp_path: Path) -> None:
    async def run() -> None:
        by_rows = make_log(tmp_path / "rows", rotate_rows=3)
        for i in range(4):
            await by_rows.append(answered(2, f"r{i}"))  # 2, 4 (rotate), 2, 4 (rotate)
        await by_rows.close()

        by_bytes = make_log(tmp_path / "bytes", rotate_bytes=4096)
        await by_bytes.append(answered(40))
        await by_bytes.append(answered(1))
        await asyncio.sleep(0.2)  # finishing happens on the log's worker thread
        assert len(list((tmp_path / "bytes").glob("*.jsonl"))) == 1
        assert len(list((tmp_path / "bytes").glob("*.jsonl.open"))) == 1
        await by_bytes.close()

        by_age = make_log(tmp_path / "age", rotate_seconds=60)
        await by_age.append(answered(1))
        by_age.tick(time.time() + 30)
        await asyncio.sleep(0.2)
        assert not list((tmp_path / "age").glob("*.jsonl"))
        by_age.tick(time.time() + 61)
        await asyncio.sleep(0.2)
        assert len(list((tmp_path / "age").glob("*.jsonl"))) == 1
        by_age.tick(time.time() + 200)  # nothing open, nothing written: no empty segments
        await by_age.close()

    asyncio.run(run())
    assert len(list((tmp_path / "rows").glob("*.jsonl"))) == 2
    assert len(list((tmp_path / "bytes").glob("*.jsonl"))) == 2
    assert len(list((tmp_path / "age").iterdir())) == 1


def test_a_restart_never_reuses_a_segment_name(tmp_path: Path) -> None:
    async def run() -> None:
        for _ in range(2):  # same pid, same second: pid 1 in a container
            log = make_log(tmp_path)
            await log.append(answered(1))
            await log.close()

    asyncio.run(run())
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
sys.path.insert(0, {here!r})
from test_predlog import answered, make_log

async def main():
    log = make_log(Path({directory!r}), rotate_rows=10**9)
    for i in range({batches}):
        await log.append(answered(100, f"r{{i}}"))
        print(f"r{{i}}", flush=True)  # this request would now get its 200
    if {hold}:
        await asyncio.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def writer(directory: Path, batches: int, hold: bool) -> subprocess.Popen[str]:
    script = WRITER.format(
        here=str(Path(__file__).parent), directory=str(directory), batches=batches, hold=hold
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_a_killed_writers_segment_holds_every_answered_row_and_is_recovered_at_once(
    tmp_path: Path,
) -> None:
    killed = writer(tmp_path, batches=50, hold=False)
    answered_ids = killed.communicate(timeout=120)[0].split()
    assert killed.returncode == -signal.SIGKILL
    assert len(answered_ids) == 50
    [left] = list(tmp_path.iterdir())
    assert left.name.endswith(".jsonl.open")

    async def restart() -> None:
        log = make_log(tmp_path)  # the next server on this directory: no waiting for timeouts
        await log.close()

    asyncio.run(restart())
    [segment] = list(tmp_path.iterdir())
    assert segment.name == left.name.removesuffix(".open")
    ids = [line["request_id"] for line in lines_in(segment)]
    assert ids == [i for i in answered_ids for _ in range(100)]


def test_a_live_writers_segment_is_never_touched_however_old(tmp_path: Path) -> None:
    live = writer(tmp_path, batches=3, hold=True)
    try:
        assert live.stdout is not None
        for _ in range(3):
            live.stdout.readline()
        [held] = list(tmp_path.glob("*.jsonl.open"))
        old = time.time() - 7 * 86400
        os.utime(held, (old, old))  # timing says nothing: only the writer's lock counts
        before = held.read_bytes()

        async def other_server() -> None:
            log = make_log(tmp_path, rotate_seconds=1)
            log.tick(time.time() + 10**6)  # its own periodic recovery, as late as can be
            await log.close()

        asyncio.run(other_server())
        assert held.exists() and held.read_bytes() == before
    finally:
        live.kill()
        live.communicate()
    # The writer is gone now.
    [(final, rows, dropped)] = segments.recover(tmp_path, PREDICTION_PREFIX)
    assert (final.name, rows, dropped) == (held.name.removesuffix(".open"), 300, 0)


def test_a_torn_last_line_is_cut_and_a_segment_without_a_whole_line_removed(
    tmp_path: Path,
) -> None:
    torn = tmp_path / "predictions-20270115T080000-999999-000001.jsonl.open"
    torn.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a"')
    empty = tmp_path / "predictions-20270115T080000-999999-000002.jsonl.open"
    empty.write_bytes(b'{"a": ')
    foreign = tmp_path / "notes.jsonl.open"
    foreign.write_bytes(b"x")
    [(final, rows, dropped)] = segments.recover(tmp_path, PREDICTION_PREFIX)
    assert final.read_bytes() == b'{"a": 1}\n{"a": 2}\n' and (rows, dropped) == (2, 4)
    assert not empty.exists() and foreign.exists()


def test_a_log_that_cannot_write_refuses_rows_then_recovers_on_its_own(tmp_path: Path) -> None:
    directory = tmp_path / "predictions"
    recorded = Recorded()

    async def run() -> None:
        log = make_log(directory, recorded)
        await log.append(answered(2, "before"))
        shutil.rmtree(directory)  # deleted under the server, segment and all
        with pytest.raises(LogUnavailable, match="deleted while the server writes"):
            await log.append(answered(2, "lost"))
        assert log.unavailable is not None and recorded.writable == [True, False]
        with pytest.raises(LogUnavailable):  # refused at once, not written anywhere
            await log.append(answered(2, "refused"))
        log.tick(time.time())  # the probe: can the directory take data again?
        for _ in range(100):
            await asyncio.sleep(0.02)
            if log.unavailable is None:
                break
        assert log.unavailable is None and recorded.writable == [True, False, True]
        await log.append(answered(2, "after"))
        await log.close()

    asyncio.run(run())
    assert recorded.errors >= 1
    [segment] = list(directory.glob("*.jsonl"))
    assert [line["request_id"] for line in lines_in(segment)] == ["after", "after"]
