"""The service's parts on their own: the micro-batcher, the configuration and the `serve` command's
wiring. The prediction log has tests/serve/test_predlog.py."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.cli import main
from modelops.serve import config as serve_config
from modelops.serve.predictor import Batcher, model_thread

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
