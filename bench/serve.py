"""Our server against the framework's ceiling and the usual alternatives, on pinned cores, in one run.

    python bench/serve.py [--bundle DIR] [--duration 30] [--reps 3] [--previous-design REV]

Every server runs pinned to core 0 (`taskset`), the load generator (`wrk`, one thread) to core 1,
so the two never compete for a core. Each point is a sustained run of `--duration` seconds (30 by
default) after a warm-up; the points are interleaved over `--reps` repetitions, so a noisy
neighbour hurts every side of a ratio alike, and each is reported as the median with its min..max.
Throughput counts 2xx answers only; any other status or socket error is an error, and an error
fails the targets. What each ratio compares:

- c=16 / ceiling: our 1-row predict requests at 16 connections against a Litestar no-op POST
  endpoint taking the same request bodies and returning bodies the size of our answers, on the
  same core: the most a Litestar app can serve here. Target >= 0.4, p99 < 25 ms.
- c=1 / fast path: our 1-row requests one at a time against calling the same derived fast path
  in-process (no HTTP, no validation, no log). Target >= 0.5. Printed beside it: the no-op
  ceiling at c=1 against the same call, and the bound for any server on this framework that
  scores before it answers (the ceiling's round trip plus one call, in series).
- 1000 rows / Pipeline: rows per second in 1000-row requests against `pipeline.predict_proba` on
  1000-row frames in-process (the better of the default and one OpenMP thread). Target >= 1.0.
- against FastAPI + pydantic: the same model behind the usual stack, written fairly (`async def`,
  the model call in one worker thread), at its best OpenMP setting.
- the durable prediction log: the same requests against the previous design (`--previous-design`,
  the revision whose log was written by a background thread after the answer), started from a git
  worktree of this repository; and the share of the server's CPU time its group writes took.
- --workers 2 / 1 worker: the whole machine against one core; the load generator then shares
  the cores with the server, which the report states in CPU seconds.
- live drift: the share of the server's CPU time its window took.
- a shadow model: the same server with `--shadow` (the same model as another version, scoring
  every request off the response path) against the one without, interleaved in the same run: the
  ratios of their p99 and 2xx/s at c=16, and whether the shadow kept up (rows scored, rows lost).
- the Open Inference Protocol: the same rows as V2 infer requests (one tensor per feature) against
  /v1, 1-row requests at c=16 and 1000-row requests at c=1.
- time to ready (process start to /health/ready 200) and the import time of `modelops serve`.

The in-process baselines run in a child process pinned to the servers' core, so both sides of a
ratio have one core (and OpenMP a team of one, as in a pinned server). The Pipeline on both cores
(a team of two) is printed beside them, as a figure, not a target's baseline.

Without --bundle it bundles the workspace's trained model (run `dvc repro` first); the rows sent
are data/prepared/test.parquet. Before anything is timed, every server's answers are checked
against `pipeline.predict_proba` (1e-9).
"""

# No `from __future__ import annotations`: FastAPI must see the baseline's request model, built at
# run time, as a real annotation.
import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from modelops import paths
from modelops.card import load_card
from modelops.fitted import records
from modelops.registry import bundle
from modelops.schema import FeatureSchema, frame_from_records
from modelops.serve import fastpath

REPO = Path(__file__).resolve().parents[1]
SERVER_CORE, LOAD_CORE = "0", "1"
BOTH_CORES = "pipeline rows/s in 1000-row calls, 2 cores"  # unpinned: an OpenMP team of two
TARGETS = {"c16_vs_ceiling": 0.4, "c1_vs_fastpath": 0.5, "rows_vs_pipeline": 1.0}
P99_TARGET_MS = 25.0
LOG_MIN_RATIO = 0.8  # the durable log against the previous design, at c=16
LIVE_DRIFT_MAX_SHARE = 0.05
PREVIOUS_DESIGN = "4217a5c"  # the prediction log written by a thread after the answer


# --------------------------------------------------------------------------- the baselines' apps


def fastapi_app(bundle_dir: Path) -> Any:
    """FastAPI + pydantic, one predict_proba per request, as its documentation recommends for
    blocking work: an `async def` handler handing the model call to one worker thread (one, so
    concurrent calls do not fight over the GIL and OpenMP's threads). Frames get the training
    dtypes, so its answers are right and the comparison is about speed only."""
    from typing import Optional

    from fastapi import FastAPI
    from pydantic import ConfigDict, create_model

    card = load_card(bundle_dir / bundle.CARD)
    schema = card.feature_schema
    pipeline = joblib.load(bundle_dir / bundle.MODEL)
    fields: dict[str, Any] = {
        f.name: (Optional[float] if f in schema.numeric else Optional[str], ...)  # noqa: UP045
        for f in schema.features
    }
    instance = create_model("Instance", __config__=ConfigDict(extra="forbid"), **fields)
    request = create_model("PredictRequest", instances=(list[instance], ...))  # type: ignore[valid-type]
    classes = [str(c) for c in card.classes]
    model_thread = ThreadPoolExecutor(max_workers=1)
    app = FastAPI()

    def score(rows: list[dict[str, Any]]) -> list[list[float]]:
        return pipeline.predict_proba(frame_from_records(schema, rows)).tolist()  # type: ignore[no-any-return]

    @app.post("/v1/predict")
    async def predict(body: request) -> dict[str, Any]:  # type: ignore[valid-type]
        rows = [i.model_dump() for i in body.instances]  # type: ignore[attr-defined]
        proba = await asyncio.get_running_loop().run_in_executor(model_thread, score, rows)
        return {
            "predictions": [{"probabilities": dict(zip(classes, p, strict=True))} for p in proba]
        }

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def ceiling_app(answer_bytes: int) -> Any:
    """Litestar doing nothing: read the body, answer with as many bytes as our server would."""
    from litestar import Litestar, Request, get, post

    answer = b"x" * answer_bytes

    @post("/v1/predict", status_code=200)
    async def predict(request: Request[Any, Any, Any]) -> bytes:
        await request.body()
        return answer

    @get("/health/ready")
    async def ready() -> bytes:
        return b"ok"

    return Litestar([predict, ready], openapi_config=None, logging_config=None, debug=False)


# --------------------------------------------------------------------------- servers and load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    pid: int
    ready_seconds: float

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (all its threads and children)."""
        total = 0.0
        for pid in [self.pid, *_children(self.pid)]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@contextmanager
def server(
    name: str, command: list[str], cores: str = SERVER_CORE, env: dict[str, str] | None = None
) -> Iterator[Server]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        ["taskset", "-c", cores, *command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{name}: server exited: {' '.join(command)}")
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: server not ready")
                time.sleep(0.05)
        yield Server(name, url, process.pid, time.perf_counter() - started)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()


def lua_script(directory: Path, name: str, bodies: list[str], path: str = "/v1/predict") -> Path:
    """A wrk script cycling through request bodies (one JSON document each) posted to `path`."""
    quoted = ",\n".join(f"[==[{b}]==]" for b in bodies)
    script = directory / f"{name}.lua"
    script.write_text(
        f"local bodies = {{\n{quoted}\n}}\n"
        "local i = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        f'  return wrk.format("POST", "{path}", headers, bodies[i])\n'
        "end\n"
    )
    return script


@dataclass(frozen=True)
class Load:
    ok_per_s: float  # 2xx answers per second
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    load_cpu: float  # CPU seconds the load generator used


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m[1]) * _UNITS[m[2]]


def wrk(url: str, connections: int, seconds: float, script: Path) -> Load:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + "/v1/predict",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    assert total, out
    requests, elapsed = int(total[1]), _ms(total[2] + total[3]) / 1000
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m[1])
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    non_2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return Load(
        ok_per_s=(requests - non_2xx) / elapsed,
        p50_ms=_ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        p99_ms=_ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
        errors=errors,
        load_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )


def scrape(url: str, *names: str) -> list[float]:
    """Each metric's value in a server's /metrics, summed over its labelled series (the live drift
    counter has one per model version)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return [
        sum(float(v) for v in re.findall(rf"^{re.escape(n)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))
        for n in names
    ]


def max_diff(url: str, recs: list[dict[str, Any]], want: np.ndarray, per_request: int) -> float:
    got = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(0, len(recs), per_request):
            response = http.post("/v1/predict", json={"instances": recs[i : i + per_request]})
            response.raise_for_status()
            got += [list(p["probabilities"].values()) for p in response.json()["predictions"]]
    return float(np.abs(np.array(got) - want[: len(got)]).max())


def v2_body(schema: FeatureSchema, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """An Open Inference Protocol infer request: one tensor per feature, null for missing."""
    kinds = {f.name: f for f in schema.features}
    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": "BYTES" if kinds[name] not in schema.numeric else "FP64",
                "data": [r[name] for r in rows],
            }
            for name in schema.names
        ]
    }


def max_diff_v2(
    url: str, path: str, schema: FeatureSchema, recs: list[dict[str, Any]], want: np.ndarray
) -> float:
    got = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(0, len(recs), 100):
            response = http.post(path, json=v2_body(schema, recs[i : i + 100]))
            response.raise_for_status()
            [p] = [o for o in response.json()["outputs"] if o["name"] == "probabilities"]
            got.append(np.array(p["data"]).reshape(p["shape"]))
    return float(np.abs(np.vstack(got) - want[: len(recs)]).max())


def shadow_bundle(bundle_dir: Path, directory: Path) -> str:
    """The same model as another version, named as --shadow takes it (DIR@digest)."""
    shutil.copytree(bundle_dir, directory)
    manifest = bundle.read_manifest(directory)
    bundle.write_manifest(directory, manifest.name, "bench-shadow", manifest.commit, [])
    return f"{directory}@{bundle.manifest_sha256(directory)}"


def calls_per_second(fn: Callable[[int], object], seconds: float) -> float:
    fn(0)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(n)
        n += 1
    return n / elapsed


def workspace_bundle(directory: Path) -> Path:
    directory.mkdir()
    for src in (paths.MODEL, paths.CARD, paths.PROFILE, paths.METRICS):
        if not src.is_file():
            raise SystemExit(f"{src} missing: run `dvc repro` first, or pass --bundle")
        shutil.copy(src, directory / src.name)
    bundle.write_manifest(directory, load_card(paths.CARD).name, "bench", "workspace", [])
    return directory


@contextmanager
def worktree(rev: str, directory: Path) -> Iterator[Path]:
    """This repository at `rev`, to run its server as it was."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(directory), rev],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(directory)],
            cwd=REPO,
            check=False,
            capture_output=True,
        )


def seconds_of(command: list[str], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


# --------------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--test", type=Path, default=paths.TEST)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds per server first")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--previous-design", default=PREVIOUS_DESIGN, metavar="REV")
    parser.add_argument("--app", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    parser.add_argument("--port", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:  # the in-process baselines, in a child pinned by this script
        print(json.dumps(in_process_rates(args.bundle, args.test, args.in_process)))
        return
    if args.app:  # a baseline server, started by this script
        import uvicorn

        kind, arg = args.app
        app = fastapi_app(Path(arg)) if kind == "fastapi" else ceiling_app(int(arg))
        uvicorn.run(
            app, host="127.0.0.1", port=int(args.port), log_level="warning", access_log=False
        )
        return
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("wrk and taskset are needed: apt-get install wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("two cores are needed: one for the servers, one for the load")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    bundle_dir = args.bundle or workspace_bundle(work / "bundle")
    digest = bundle.manifest_sha256(bundle_dir)
    card = load_card(bundle_dir / bundle.CARD)
    schema: FeatureSchema = card.feature_schema
    pipeline = joblib.load(bundle_dir / bundle.MODEL)
    test = pd.read_parquet(args.test)
    recs = records(schema, test)
    want = pipeline.predict_proba(schema.to_model_frame(test))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"model: {card.estimator}, {len(schema.features)} features; {len(test)} test rows")
    print(
        f"servers on core {SERVER_CORE}, wrk on core {LOAD_CORE}; {args.reps} interleaved "
        f"repetitions of {args.duration:g} s per point after {args.warmup:g} s of warm-up"
    )

    one_row = lua_script(work, "one", [json.dumps({"instances": [r]}) for r in recs[:200]])
    thousand = lua_script(work, "thousand", [json.dumps({"instances": recs[:1000]})])
    ours = [
        sys.executable,
        "-m",
        "modelops.cli",
        "serve",
        "--bundle",
        str(bundle_dir),
        "--bundle-sha256",
        digest,
    ]
    answer_bytes = _answer_size(recs[0], card)
    shadow = shadow_bundle(bundle_dir, work / "shadow-bundle")
    v2_path = f"/v2/models/{card.name}/infer"
    one_row_v2 = lua_script(
        work, "one-v2", [json.dumps(v2_body(schema, [r])) for r in recs[:200]], v2_path
    )
    thousand_v2 = lua_script(
        work, "thousand-v2", [json.dumps(v2_body(schema, recs[:1000]))], v2_path
    )
    me = [sys.executable, str(Path(__file__).resolve())]
    with (
        worktree(args.previous_design, work / "previous") as previous,
        server("ours", [*ours, "--log-dir", str(work / "log-ours")]) as s_ours,
        server(
            "ours with a shadow",
            [*ours, "--log-dir", str(work / "log-shadow"), "--shadow", shadow],
        ) as s_shadow,
        server(
            "ours, fsync before every answer",
            [*ours, "--log-dir", str(work / "log-fsync"), "--log-fsync-seconds", "0"],
        ) as s_fsync,
        server(
            "ours, 2 workers",
            [*ours, "--log-dir", str(work / "log-workers"), "--workers", "2"],
            cores=f"{SERVER_CORE},{LOAD_CORE}",
        ) as s_workers,
        server(
            "previous design",
            [
                *ours[:-2],  # it takes no --bundle-sha256: its trust was the bundle's own hashes
                "--log-dir",
                str(work / "log-previous"),
            ],
            env={"PYTHONPATH": str(previous / "src")},
        ) as s_previous,
        server("fastapi", [*me, "--app", "fastapi", str(bundle_dir)]) as s_fastapi,
        server(
            "fastapi, OMP_NUM_THREADS=1",
            [*me, "--app", "fastapi", str(bundle_dir)],
            env={"OMP_NUM_THREADS": "1"},
        ) as s_fastapi1,
        server("ceiling", [*me, "--app", "ceiling", str(answer_bytes)]) as s_ceiling,
    ):
        checks = {
            s.name: max_diff(s.url, recs[:300], want, 1)
            for s in (s_ours, s_shadow, s_workers, s_previous, s_fastapi)
        }
        checks["ours, 1000 rows/request"] = max_diff(s_ours.url, recs[:1000], want, 1000)
        checks["ours, V2 infer"] = max_diff_v2(s_ours.url, v2_path, schema, recs[:1000], want)
        for name, d in checks.items():
            print(f"answers of {name}: max |Δp| vs pipeline.predict_proba = {d:.2g}")
        if max(checks.values()) > 1e-9:
            raise SystemExit("answers differ from the pipeline; not timing a wrong answer")
        plan = [
            ("ceiling c=16", s_ceiling, 16, one_row),
            ("ours c=16", s_ours, 16, one_row),
            ("ours with a shadow c=16", s_shadow, 16, one_row),
            ("ours V2 c=16", s_ours, 16, one_row_v2),
            ("ceiling c=1", s_ceiling, 1, one_row),
            ("ours c=1", s_ours, 1, one_row),
            ("ours 1000-row requests c=1", s_ours, 1, thousand),
            ("ours V2 1000-row requests c=1", s_ours, 1, thousand_v2),
            ("previous design c=16", s_previous, 16, one_row),
            ("ours, fsync before every answer, c=16", s_fsync, 16, one_row),
            ("ours, 2 workers, c=16", s_workers, 16, one_row),
            ("fastapi c=16", s_fastapi, 16, one_row),
            ("fastapi c=16, OMP_NUM_THREADS=1", s_fastapi1, 16, one_row),
            ("fastapi c=1", s_fastapi, 1, one_row),
        ]
        for _, s, c, script in plan:
            wrk(s.url, c, args.warmup, script)
        results, inproc, shares = measure(args, plan, bundle_dir, s_ours)
        kept_up = shadow_kept_up(s_shadow.url)
        ready = [s.ready_seconds for s in (s_ours, s_fsync, s_workers)]
    report(args, results, inproc, shares, ready)
    report_multi(results, kept_up)


def _answer_size(record: dict[str, Any], card: Any) -> int:
    """Bytes of our answer to a 1-row request: model reference, one prediction, a request id."""
    probabilities = {str(c): 0.123456789012345 for c in card.classes}
    answer = {
        "model": {"name": card.name, "version": "bench", "sha256": card.artifact.sha256},
        "predictions": [{"label": card.classes[0], "probabilities": probabilities}],
        "request_id": "0" * 32,
    }
    return len(json.dumps(answer, separators=(",", ":")))


def in_process_rates(bundle_dir: Path, test_path: Path, seconds: float) -> dict[str, float]:
    """The in-process baselines, in this process: the Pipeline on 1-row and 1000-row frames (the
    better of the default and one OpenMP thread) and the derived fast path on single rows."""
    card = load_card(bundle_dir / bundle.CARD)
    schema: FeatureSchema = card.feature_schema
    pipeline = joblib.load(bundle_dir / bundle.MODEL)
    test = pd.read_parquet(test_path)
    singles = [schema.to_model_frame(test.iloc[[i]]) for i in range(200)]
    batch = schema.to_model_frame(test.iloc[:1000])
    fast = fastpath.derive(pipeline, schema)
    rows = fastpath.rows_from_records(schema, records(schema, test.iloc[:200]))
    one = many = 0.0
    for threads in (None, 1):  # OpenMP's spinning threads: each gets its better setting
        with threadpool_limits(limits=threads):
            one = max(
                one, calls_per_second(lambda n: pipeline.predict_proba(singles[n % 200]), seconds)
            )
            many = max(
                many, 1000 * calls_per_second(lambda n: pipeline.predict_proba(batch), seconds)
            )
    return {
        "pipeline 1-row calls/s": one,
        "pipeline rows/s in 1000-row calls": many,
        "fast path 1-row calls/s": calls_per_second(
            lambda n: fast.predict_proba(rows[n % 200 : n % 200 + 1]), seconds
        ),
    }


def in_process(args: argparse.Namespace, bundle_dir: Path, cores: str, seconds: float) -> Any:
    """`in_process_rates` in a new process on `cores`: pinned to the servers' core, the baselines
    get the one core each server gets (an OpenMP team sized to it, as in the server)."""
    out = subprocess.run(
        ["taskset", "-c", cores, sys.executable, str(Path(__file__).resolve()),
         "--in-process", str(seconds), "--bundle", str(bundle_dir), "--test", str(args.test)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def measure(
    args: argparse.Namespace,
    plan: list[tuple[str, Server, int, Path]],
    bundle_dir: Path,
    s_ours: Server,
) -> tuple[dict[str, list[Load]], dict[str, list[float]], dict[str, float]]:
    seconds = min(10.0, args.duration / 3)
    results: dict[str, list[Load]] = {}
    inproc: dict[str, list[float]] = {}
    series = ("modelops_drift_update_seconds_total", "modelops_prediction_log_write_seconds_sum")
    busy_before = scrape(s_ours.url, *series)
    cpu_before = s_ours.cpu_seconds()
    for rep in range(args.reps):
        for name, value in in_process(args, bundle_dir, SERVER_CORE, seconds).items():
            inproc.setdefault(name, []).append(value)
        both = in_process(args, bundle_dir, f"{SERVER_CORE},{LOAD_CORE}", seconds)
        inproc.setdefault(BOTH_CORES, []).append(both["pipeline rows/s in 1000-row calls"])
        for name, s, c, script in plan:
            results.setdefault(name, []).append(wrk(s.url, c, args.duration, script))
        print(f"  repetition {rep + 1}/{args.reps} done (load average {os.getloadavg()[0]:.2f})")
    busy = [b - a for a, b in zip(busy_before, scrape(s_ours.url, *series), strict=True)]
    cpu = s_ours.cpu_seconds() - cpu_before
    shares = {"live drift": busy[0] / cpu, "prediction log writes": busy[1] / cpu}
    return results, inproc, shares


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def report(
    args: argparse.Namespace,
    results: dict[str, list[Load]],
    inproc: dict[str, list[float]],
    shares: dict[str, float],
    ready: list[float],
) -> None:
    print(f"\nin-process, pinned to core {SERVER_CORE} as the servers are:")
    for name, values in inproc.items():
        if name != BOTH_CORES:
            print(f"  {name:44} {spread(values)}")
    print(f"in-process on both cores (not a target's baseline):\n  {BOTH_CORES:44} "
          f"{spread(inproc[BOTH_CORES])}")  # fmt: skip
    print(
        f"\n{'point (median (min..max) of ' + str(args.reps) + ')':44} {'2xx/s':>20} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    med: dict[str, Load] = {}
    for name, runs in results.items():
        med[name] = Load(
            statistics.median(r.ok_per_s for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.errors for r in runs),
            statistics.median(r.load_cpu for r in runs),
        )
        print(
            f"{name:44} {spread([r.ok_per_s for r in runs]):>20} {med[name].p50_ms:7.2f} "
            f"{med[name].p99_ms:7.2f} {med[name].errors:6d}"
        )
    # The previous design's non-2xx are the defect it is measured for (503: its log backlogged);
    # every other server, ours and the baselines, must answer every request with a 2xx.
    errors = sum(m.errors for n, m in med.items() if n != "previous design c=16")
    fast_1 = statistics.median(inproc["fast path 1-row calls/s"])
    rows_inproc = statistics.median(inproc["pipeline rows/s in 1000-row calls"])
    ours16, ours1 = med["ours c=16"], med["ours c=1"]
    ratios = {
        "c16_vs_ceiling": ours16.ok_per_s / med["ceiling c=16"].ok_per_s,
        "c1_vs_fastpath": ours1.ok_per_s / fast_1,
        "rows_vs_pipeline": 1000 * med["ours 1000-row requests c=1"].ok_per_s / rows_inproc,
    }
    # One request at a time cannot beat the no-op endpoint's round trip followed by one model call:
    # the most any server on this framework, answering after scoring, could reach at c=1.
    c1_bound = 1 / (1 / med["ceiling c=1"].ok_per_s + 1 / fast_1) / fast_1
    fastapi_best = max(m.ok_per_s for n, m in med.items() if n.startswith("fastapi"))
    log_ratio = ours16.ok_per_s / med["previous design c=16"].ok_per_s
    fsync_ratio = med["ours, fsync before every answer, c=16"].ok_per_s / ours16.ok_per_s
    workers = med["ours, 2 workers, c=16"]

    passed: list[bool] = []  # every target's verdict, as printed

    def verdict(ok: bool) -> str:
        passed.append(ok)
        return "pass" if ok else "FAIL"

    print("\ntargets (ratios of medians from this run):")
    c16_ok = ratios["c16_vs_ceiling"] >= TARGETS["c16_vs_ceiling"] and ours16.p99_ms < P99_TARGET_MS
    print(
        f"  {verdict(c16_ok)}  c=16 / no-op ceiling          {ratios['c16_vs_ceiling']:5.2f}x  "
        f"(>= {TARGETS['c16_vs_ceiling']}; p99 {ours16.p99_ms:.1f} ms, < {P99_TARGET_MS:g})"
    )
    print(
        f"  {verdict(ratios['c1_vs_fastpath'] >= TARGETS['c1_vs_fastpath'])}  c=1 / in-process "
        f"fast path    {ratios['c1_vs_fastpath']:5.2f}x  (>= {TARGETS['c1_vs_fastpath']};\n"
        f"{'':44}the no-op ceiling itself reaches {med['ceiling c=1'].ok_per_s / fast_1:.2f}x at c=1;\n"
        f"{'':44}its round trip plus one fast-path call: {c1_bound:.2f}x)"
    )
    print(
        f"  {verdict(ratios['rows_vs_pipeline'] >= TARGETS['rows_vs_pipeline'])}  1000-row / "
        f"in-process rows/s  {ratios['rows_vs_pipeline']:5.2f}x  (>= {TARGETS['rows_vs_pipeline']})"
    )
    print(
        f"  {verdict(log_ratio >= LOG_MIN_RATIO)}  durable log / previous design {log_ratio:5.2f}x "
        f"at c=16  (>= {LOG_MIN_RATIO};\n{'':44}the previous design's "
        f"{med['previous design c=16'].errors} non-2xx not counted)"
    )
    print(f"  {verdict(errors == 0)}  non-2xx or socket errors of every other server: {errors}")
    print("\nalso measured:")
    print(f"  c=16 / FastAPI+pydantic best   {ours16.ok_per_s / fastapi_best:5.1f}x")
    print(f"  fsync before every answer      {fsync_ratio:5.2f}x the default (fsync once a second)")
    print(
        f"  prediction log writes          {shares['prediction log writes']:.2%} of the server's CPU"
    )
    drift_ok = shares["live drift"] < LIVE_DRIFT_MAX_SHARE
    print(
        f"  live drift                     {shares['live drift']:.2%} of the server's CPU "
        f"(< {LIVE_DRIFT_MAX_SHARE:.0%}: {verdict(drift_ok)})"
    )
    print(
        f"  2 workers / 1 worker at c=16   {workers.ok_per_s / ours16.ok_per_s:5.2f}x; the load "
        f"generator used {workers.load_cpu / args.duration:.0%} of a core meanwhile,\n{'':34}on "
        "one of the two cores the workers share"
    )
    print(f"  time to ready                  {spread(ready, '{:.2f}')} s")
    print(
        f"  import of `modelops serve`     "
        f"{seconds_of([sys.executable, '-c', 'import modelops.cli.serve, modelops.serve.app']):.2f} s"
    )
    print(f"\nall targets met: {'yes' if all(passed) else 'NO'}")


def shadow_kept_up(url: str) -> tuple[float, float, float]:
    """The shadow server's rows answered, rows its shadow scored, rows it lost."""
    answered, scored, lost = scrape(
        url,
        "modelops_predictions_total",
        "modelops_shadow_rows_total",
        "modelops_shadow_lost_rows_total",
    )
    return answered, scored, lost


def report_multi(results: dict[str, list[Load]], kept_up: tuple[float, float, float]) -> None:
    """The shadow's cost on the primary, and V2 against V1: ratios of medians, same run."""

    def med(name: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[name])

    print("\nseveral models, and the Open Inference Protocol (ratios of medians, same run):")
    p99_on, p99_off = med("ours with a shadow c=16", "p99_ms"), med("ours c=16", "p99_ms")
    ok_on, ok_off = med("ours with a shadow c=16", "ok_per_s"), med("ours c=16", "ok_per_s")
    print(
        f"  with a shadow / without, c=16  p99 {p99_on / p99_off:5.2f}x ({p99_on:.1f} vs "
        f"{p99_off:.1f} ms); 2xx/s {ok_on / ok_off:5.2f}x"
    )
    answered, scored, lost = kept_up
    print(
        f"  the shadow scored {scored:.0f} of the {answered:.0f} rows its server answered "
        f"({lost:.0f} lost)"
    )
    v2, v1 = med("ours V2 c=16", "ok_per_s"), med("ours c=16", "ok_per_s")
    print(f"  V2 / V1, 1-row requests, c=16  {v2 / v1:5.2f}x 2xx/s ({v2:.0f} vs {v1:.0f})")
    v2k = med("ours V2 1000-row requests c=1", "ok_per_s")
    v1k = med("ours 1000-row requests c=1", "ok_per_s")
    print(f"  V2 / V1, 1000-row requests     {v2k / v1k:5.2f}x rows/s")


if __name__ == "__main__":
    main()
