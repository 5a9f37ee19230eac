"""Bundles trained once per session on synthetic customers, and helpers to run the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import msgspec
import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient
from sklearn.preprocessing import MinMaxScaler

from modelops import files
from modelops.card import DataFingerprint, to_json
from modelops.dataset import split
from modelops.drift.profile import build_profile
from modelops.evaluation import classification_metrics
from modelops.fitted import build_card, reference_sample
from modelops.logline import OPEN_SUFFIX
from modelops.params import Params
from modelops.pipeline import build_pipeline
from modelops.registry import bundle
from modelops.schema import FeatureSchema, infer_and_validate
from modelops.serve.app import create_app
from modelops.serve.config import ServeConfig
from modelops.synthetic import generate_customers

READY_TIMEOUT = 120.0  # loading and proving a model on a busy 2-core CI machine


@dataclass(frozen=True)
class Trained:
    """A bundle on disk and what the tests compare the server with."""

    bundle_dir: Path
    pipeline: Any
    schema: FeatureSchema
    test: pd.DataFrame  # held-out rows, features as prepared (NaN for missing)

    def records(self, frame: pd.DataFrame | None = None) -> list[dict[str, Any]]:
        from modelops.fitted import records

        return records(self.schema, self.test if frame is None else frame)

    def expected(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        frame = self.test if frame is None else frame
        return self.pipeline.predict_proba(self.schema.to_model_frame(frame))


def params(**train: Any) -> Params:
    return msgspec.convert(
        {
            "base": {"seed": 3},
            "data": {
                "drop": ["customer_id"],
                "features": {
                    "tenure_months": {"kind": "numeric", "dtype": "integer", "min": 0, "max": 120},
                    "monthly_charges": {"kind": "numeric", "min": 0, "max": 1000},
                    "age": {"kind": "numeric", "dtype": "integer", "min": 18, "max": 120},
                    "contract": {
                        "kind": "categorical",
                        "categories": ["month-to-month", "one_year", "two_year"],
                        "strict": True,
                    },
                },
            },
            "train": {"hist_gradient_boosting": {"max_iter": 60}, **train},
        },
        Params,
    )


def write_bundle(
    directory: Path,
    p: Params,
    schema: FeatureSchema,
    pipeline: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    version: str,
) -> Path:
    """What `train`, `evaluate`, `profile` and the registry produce, in one bundle directory."""
    directory.mkdir(parents=True)
    model = directory / bundle.MODEL
    joblib.dump(pipeline, model)
    reference = reference_sample(pipeline, schema, train, 32, p.base.seed)
    fingerprint = DataFingerprint(path="synthetic", md5="0" * 32, rows=len(train))
    card = build_card(p, schema, pipeline, model, {"train": fingerprint}, reference)
    files.write_json(directory / bundle.CARD, to_json(card))
    proba = pipeline.predict_proba(schema.to_model_frame(test))
    files.write_json(
        directory / bundle.PROFILE, build_profile(schema, train, 10, card.name, proba).to_dict()
    )
    metrics = classification_metrics(
        schema.target_array(test), proba, card.classes, schema.target.positive, 0.5
    )
    files.write_json(directory / bundle.METRICS, json.loads(json.dumps(metrics, default=float)))
    bundle.write_manifest(directory, card.name, version, "1" * 40, ["prod"])
    return directory


def train_bundle(
    directory: Path, p: Params, version: str, swap_scaler: bool = False, reverse: bool = False
) -> Trained:
    raw = generate_customers(3000, seed=21)
    if reverse:  # the same features, in the opposite order
        raw = raw[raw.columns[::-1]]
    schema, clean = infer_and_validate(raw, p.data, "synthetic")
    train, test = split(clean, schema.target.name, 0.2, p.base.seed)
    pipeline = build_pipeline(p, schema)
    if swap_scaler:
        # A step the fast path does not know: the server must fall back to the Pipeline.
        pipeline.named_steps["features"].transformers[0][1].steps[-1] = ("scale", MinMaxScaler())
    pipeline.fit(schema.to_model_frame(train), schema.target_array(train))
    write_bundle(directory, p, schema, pipeline, train, test, version)
    return Trained(directory, pipeline, schema, test)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The default pipeline (HistGradientBoosting), which the fast path reproduces."""
    return train_bundle(tmp_path_factory.mktemp("bundles") / "churn", params(), "v1.0.0")


@pytest.fixture(scope="session")
def trained_fallback(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A pipeline with a MinMaxScaler: no fast path, so the server scores with the Pipeline."""
    p = params(estimator="logistic_regression")
    return train_bundle(tmp_path_factory.mktemp("bundles") / "churn", p, "v0.9.0", swap_scaler=True)


@pytest.fixture(scope="session")
def trained_next(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The next version of the default model: retrained with fewer trees, the same contract."""
    p = params(hist_gradient_boosting={"max_iter": 25})
    return train_bundle(tmp_path_factory.mktemp("bundles") / "churn", p, "v1.1.0")


def source(trained: Trained) -> str:
    """A bundle as --shadow and --canary name it: its directory and the digest vouching for it."""
    return f"{trained.bundle_dir}@{bundle.manifest_sha256(trained.bundle_dir)}"


@pytest.fixture
def copy_bundle(tmp_path: Path, trained: Trained) -> Path:
    """A private copy of the default bundle, for tests that tamper with it."""
    target = tmp_path / "bundle"
    shutil.copytree(trained.bundle_dir, target)
    return target


def wait_ready(client: TestClient[Any] | httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        response = client.get("/health/ready")
        body: dict[str, Any] = response.json()
        if response.status_code == 200 or body.get("status") == "failed":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"server not ready after {READY_TIMEOUT}s: {body}")
        time.sleep(0.05)


def trusting(bundle_dir: Path, config: ServeConfig | None = None) -> ServeConfig:
    """`config` with the digest of the bundle's manifest as it is now: an operator vouching for it."""
    digest = bundle.manifest_sha256(bundle_dir)
    return msgspec.structs.replace(config or ServeConfig(), bundle_sha256=digest)


def serve_client(bundle_dir: Path, config: ServeConfig) -> TestClient[Any]:
    """The app in-process; the bundle vouched for as it is now unless `config` names a digest."""
    if config.bundle_sha256 is None:
        config = trusting(bundle_dir, config)
    return TestClient(create_app(bundle_dir, config), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    log_dir = tmp_path_factory.mktemp("predictions")
    with serve_client(trained.bundle_dir, ServeConfig(log_dir=str(log_dir))) as c:
        assert wait_ready(c)["status"] == "ready"
        yield c


def post(client: TestClient[Any] | httpx.Client, body: Any, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/predict", json=body, **kwargs)


# --------------------------------------------------------------------------- real uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_dir: Path
    stderr: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.read_text().splitlines() if line]


def start_server(
    bundle_dir: Path | None,
    workdir: Path,
    *options: str,
    cwd: Path | None = None,
    prefix: Sequence[str] = (),
    log_dir: Path | None = None,
) -> Server:
    """`modelops serve` in its own process on a free loopback port, once it is ready. Without a
    bundle directory, `options` say where the model comes from (e.g. `--ref prod`). `prefix` runs
    the server through another command (which must exec it, keeping the pid)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or workdir / "predictions"
    stderr = workdir / "server.log"
    command = [
        *prefix,
        sys.executable,
        "-m",
        "modelops.cli",
        "serve",
        *(
            ["--bundle", str(bundle_dir), "--bundle-sha256", bundle.manifest_sha256(bundle_dir)]
            if bundle_dir is not None
            else []
        ),
        "--port",
        str(port),
        "--log-dir",
        str(log_dir),
        *options,
    ]
    with open(stderr, "wb") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ}, cwd=cwd
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_dir, stderr)
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(base_url=server.url, timeout=5) as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{stderr.read_text()}")
            try:
                if http.get("/health/ready").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"server not ready:\n{stderr.read_text()}")
            time.sleep(0.1)


def read_log(log_dir: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for segment in sorted(log_dir.glob("predictions-*.jsonl")):
        lines += [json.loads(line) for line in segment.read_text().splitlines()]
    return lines


# Bodies no client may use to get a 5xx or its own input echoed back: (name, body, content type,
# status the service answers).
HOSTILE: list[tuple[str, bytes, str, int]] = [
    ("10 MB body", b'{"instances": [' + b" " * (10 << 20) + b"]}", "application/json", 413),
    (
        "deep nesting",
        b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
        400,
    ),
    ("deep nesting, unterminated", b"[" * 200_000, "application/json", 400),
    ("huge number", b'{"instances": [{"age": 1e999999}]}', "application/json", 400),
    ("huge integer", b'{"instances": [{"age": ' + b"9" * 5000 + b"}]}", "application/json", 400),
    ("string for a number", b'{"instances": [{"age": "SECRET-forty"}]}', "application/json", 400),
    ("empty instances", b'{"instances": []}', "application/json", 400),
    ("no instances", b"{}", "application/json", 400),
    ("empty body", b"", "application/json", 400),
    ("json null", b"null", "application/json", 400),
    ("wrong content type", b'{"instances": []}', "text/plain", 415),
    ("form content type", b"instances=1", "application/x-www-form-urlencoded", 415),
    ("latin-1 charset", b'{"instances": []}', "application/json; charset=latin-1", 415),
    ("no content type", b'{"instances": []}', "", 415),
    ("invalid utf-8", b'{"instances": [{"region": "SECRET\xff\xfe"}]}', "application/json", 400),
    ("truncated", b'{"instances": [{"age": 1', "application/json", 400),
    ("NaN", b'{"instances": [{"age": NaN}]}', "application/json", 400),
]


def segment_lines(directory: Path, kind: str) -> list[dict[str, Any]]:
    """Every line of every log segment of a kind ("predictions", "feedback"), finished or still
    open, as a reader after a crash sees them.

    A SIGKILL can cut a group write short in the middle of a line: the open segment then ends
    without its newline. None of those lines was acknowledged (an answer waits for its write), and
    the next server drops the torn tail when it finishes the segment; so does this reader. A
    finished segment must end with a whole line."""
    found = []
    for segment in sorted(directory.glob(f"{kind}-*.jsonl*")):
        data = segment.read_bytes()
        if data and not data.endswith(b"\n"):
            assert segment.name.endswith(OPEN_SUFFIX), f"{segment.name} ends mid-line"
            data = data[: data.rfind(b"\n") + 1]
        found += [json.loads(line) for line in data.splitlines()]
    return found
