"""Drift counted on a real dask.distributed cluster (a LocalCluster of worker processes): the same
counts, PSI values and statuses as the single-process reader, from a local directory and from S3
(moto's server) through a DVC remote's configuration."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from modelops import synthetic
from modelops.cli import main as cli
from modelops.drift import distributed, incoming
from modelops.drift.profile import Profile, build_profile
from modelops.drift.report import Source, Tally
from modelops.drift.status import Thresholds
from modelops.logline import FEEDBACK_PREFIX, PREDICTION_PREFIX, segment_name
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate
from tests.conftest import tool_env
from tests.drift_files import write_segment
from tests.s3 import moto_server

SEED = 17
BUCKET = "modelops-logs"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as running:
        yield running.scheduler_address


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureSchema, Profile]:
    raw = synthetic.generate_customers(6000, SEED)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    p1 = np.random.default_rng(SEED).beta(2, 5, len(clean))
    return schema, build_profile(schema, clean, 10, "churn", np.column_stack([1 - p1, p1]))


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory, trained: tuple[FeatureSchema, Profile]) -> Path:
    """A log directory: segments of two versions and scenarios, a feedback segment beside them,
    a parquet batch in a subdirectory, and an empty segment."""
    schema, _ = trained
    root = tmp_path_factory.mktemp("log")
    rng = np.random.default_rng(SEED)
    for i, scenario in enumerate(["no_drift", "campaign", "no_drift", "seasonal", "new_region"]):
        frame = synthetic.generate_customers(400 + 100 * i, SEED + i, scenario)
        write_segment(
            root / segment_name(PREDICTION_PREFIX, 1.8e9 + 3600 * i, 7, i),
            frame,
            schema.names,
            rng.beta(2, 5, len(frame)),
            version=f"v1.{i % 2}.0",
        )
    (root / segment_name(FEEDBACK_PREFIX, 1.8e9, 7, 1)).write_text('{"id": "x"}\n')
    (root / segment_name(PREDICTION_PREFIX, 1.9e9, 7, 9)).write_text("")
    (root / "batches").mkdir()
    synthetic.generate_customers(700, SEED, "campaign").to_parquet(root / "batches" / "b.parquet")
    return root


def _same(a: tuple[Tally, Source], b: tuple[Tally, Source]) -> None:
    (ta, sa), (tb, sb) = a, b
    assert sa == sb and ta.rows == tb.rows
    for name in ta.features:
        assert np.array_equal(ta.features[name], tb.features[name]), name
    for cls in ta.predictions:
        assert np.array_equal(ta.predictions[cls], tb.predictions[cls]), cls
    # The same counts make the same report, to the last digit of every PSI and p-value.
    ra, rb = ta.report(Thresholds()), tb.report(Thresholds())
    assert msgspec.json.encode(ra) == msgspec.json.encode(rb)


def test_a_cluster_of_worker_processes_counts_exactly_what_one_process_counts(
    cluster: str, log: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    single = incoming.tally(log, profile)
    spread = distributed.tally(str(log), profile, scheduler=cluster)
    _same(spread, single)
    assert single[1].files == 6 and single[1].served_versions == {"v1.0.0": 1800, "v1.1.0": 1200}
    report = single[0].report(Thresholds())
    assert report.status == "significant" and report.rows == 3700


def test_drift_check_on_a_scheduler_prints_the_single_process_report(
    cluster: str,
    log: Path,
    trained: tuple[FeatureSchema, Profile],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, profile = trained
    (tmp_path / "profile.json").write_bytes(msgspec.json.encode(profile))
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the default thresholds
    args = ["drift", "check", "--json", "--incoming", str(log), "--profile", "profile.json"]
    capsys.readouterr()
    assert cli([*args, "--fail-on", "significant"]) == 3
    local = json.loads(capsys.readouterr().out)
    assert cli([*args, "--scheduler", cluster, "--fail-on", "significant"]) == 3
    assert json.loads(capsys.readouterr().out) == local
    assert cli(["drift", "check", "--engine", "dask"]) == 2  # counts --incoming rows only


def test_segments_in_s3_are_counted_through_the_dvc_remote_on_the_cluster(
    cluster: str,
    log: Path,
    trained: tuple[FeatureSchema, Profile],
    tmp_path: Path,
) -> None:
    _, profile = trained
    repo = tmp_path / "repo"
    repo.mkdir()
    env = tool_env()
    with moto_server(tmp_path) as s3:
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        for path in sorted(log.rglob("*")):
            if path.is_file():
                key = f"predictions/churn/{path.relative_to(log).as_posix()}"
                client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        for cmd in (
            ["git", "init", "-q"],
            ["dvc", "init", "-q"],
            ["dvc", "remote", "add", "logs", f"s3://{BUCKET}/predictions"],
            ["dvc", "remote", "modify", "logs", "endpointurl", s3.endpoint],
            # Credentials in the git-ignored config.local travel with the filesystem to the
            # workers, whose environment has none.
            ["dvc", "remote", "modify", "--local", "logs", "access_key_id", "modelops-test"],
            ["dvc", "remote", "modify", "--local", "logs", "secret_access_key", "modelops-secret"],
        ):
            subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
        single = incoming.tally(log, profile)
        url = f"s3://{BUCKET}/predictions/churn"
        for path in (url, "remote://logs/churn"):
            spread = distributed.tally(path, profile, scheduler=cluster, repo=repo)
            _same(
                (spread[0], msgspec.structs.replace(spread[1], path=str(log))),
                single,
            )
            assert spread[1].path == url
        fs, resolved = distributed.remote_filesystem(url, repo)
        here = incoming.tally(resolved, profile, fs=fs)
        _same((here[0], msgspec.structs.replace(here[1], path=str(log))), single)
