"""DVC push/pull through a real S3 API (moto's server on loopback): every tracked file comes back intact."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelops import files, paths
from tests.conftest import copy_repo, edit_file, run
from tests.s3 import S3Server, moto_server

BUCKET = "modelops-artifacts"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def pushed_repo(
    tmp_path_factory: pytest.TempPathFactory, reproduced_repo: Path, s3: S3Server
) -> Path:
    """A reproduced repository whose S3 remote holds every DVC-tracked output."""
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("s3") / "repo")
    run("dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/dvcstore", cwd=repo)
    run("dvc", "remote", "modify", "storage", "endpointurl", s3.endpoint, cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "reproduce; S3 remote", cwd=repo)
    out = run("dvc", "push", cwd=repo, env=s3.env)
    assert "pushed" in out.stdout + out.stderr
    return repo


def cached_outputs(repo: Path) -> dict[str, str]:
    """Outputs DVC keeps in its cache (and so in the remote), with the md5 dvc.lock records."""
    uncached = {
        next(iter(entry))
        for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values()
        for key in ("outs", "metrics", "plots")
        for entry in stage.get(key, [])
        if isinstance(entry, dict) and next(iter(entry.values())).get("cache") is False
    }
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in uncached
    }


def test_committed_config_names_the_remote_but_holds_no_credentials(pushed_repo: Path) -> None:
    config = (pushed_repo / ".dvc" / "config").read_text()
    assert f"s3://{BUCKET}/dvcstore" in config and "endpointurl" in config
    assert "modelops-test" not in config and "secret" not in config


def test_push_then_pull_into_an_empty_cache_restores_every_file(
    pushed_repo: Path, s3: S3Server
) -> None:
    repo = pushed_repo
    expected = cached_outputs(repo)
    assert str(paths.MODEL) in expected and str(paths.RAW) in expected
    keys = [
        o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="dvcstore/")["Contents"]
    ]
    for path, md5 in expected.items():  # DVC 3 stores an object at files/md5/<2 chars>/<rest>
        assert any(k.endswith(f"/{md5[:2]}/{md5[2:]}") for k in keys), (
            f"{path} ({md5}) not in the bucket"
        )

    # every file under every cached output (a directory output holds several), by content
    before = {
        f: files.md5(f)
        for path in expected
        for f in ([repo / path] if (repo / path).is_file() else sorted((repo / path).rglob("*")))
    }
    shutil.rmtree(repo / ".dvc" / "cache")
    for path in expected:
        target = repo / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    run("dvc", "pull", cwd=repo, env=s3.env)

    assert {f: files.md5(f) for f in before} == before
    assert "Data and pipelines are up to date." in run("dvc", "status", cwd=repo).stdout


def test_a_fresh_clone_pulls_the_model_from_s3(
    pushed_repo: Path, s3: S3Server, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(pushed_repo), str(clone), cwd=tmp_path)
    assert not (clone / paths.MODEL).exists()
    run("dvc", "pull", str(paths.MODEL), cwd=clone, env=s3.env)
    assert (
        files.sha256(clone / paths.MODEL)
        == files.read_json(clone / paths.CARD)["artifact"]["sha256"]
    )


def test_pull_without_credentials_fails_and_says_so(
    pushed_repo: Path, s3: S3Server, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(pushed_repo), str(clone), cwd=tmp_path)
    env = {k: v for k, v in s3.env.items() if not k.startswith("AWS_")}  # no credentials at all
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    proc = run("dvc", "pull", str(paths.MODEL), cwd=clone, env=env, check=False)
    assert proc.returncode != 0
    assert not (clone / paths.MODEL).exists()


def log_segment(repo: Path, scenario: str, rows: int, seq: int) -> bytes:
    """A prediction-log segment as the server writes it, for `rows` rows of a demo scenario."""
    import joblib
    import pandas as pd

    from modelops.card import load_card
    from modelops.fitted import records

    card = load_card(repo / paths.CARD)
    frame = pd.read_parquet(repo / paths.SCENARIOS / f"{scenario}.parquet").head(rows)
    proba = joblib.load(repo / paths.MODEL).predict_proba(card.feature_schema.to_model_frame(frame))
    lines = [
        {
            "timestamp": f"2026-11-27T08:{seq:02d}:00.000000Z",
            "request_id": f"r{seq}-{i}",
            "model": {"name": card.name, "version": "v1.0.0"},
            "inputs": inputs,
            "output": {
                "label": int(p[1] >= 0.5),
                "probabilities": {"0": float(p[0]), "1": float(p[1])},
            },
        }
        for i, (inputs, p) in enumerate(
            zip(records(card.feature_schema, frame), proba, strict=True)
        )
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_drift_stage_reads_prediction_logs_shipped_to_s3(
    pushed_repo: Path, s3: S3Server, tmp_path: Path
) -> None:
    repo = copy_repo(pushed_repo, tmp_path / "repo")
    client = s3.client()
    key = "predictions/churn/predictions-20261127T080000-1-{}.jsonl"
    client.put_object(Bucket=BUCKET, Key=key.format(1), Body=log_segment(repo, "no_drift", 400, 1))
    client.put_object(Bucket=BUCKET, Key=key.format(2), Body=log_segment(repo, "no_drift", 200, 2))

    # The logs' prefix as a remote of its own: endpoint in the config, credentials from the env.
    run("dvc", "remote", "add", "logs", f"s3://{BUCKET}/predictions", cwd=repo)
    run("dvc", "remote", "modify", "logs", "endpointurl", s3.endpoint, cwd=repo)
    run("dvc", "import-url", "remote://logs/churn", "data/production", cwd=repo, env=s3.env)
    edit_file(
        repo / "params.yaml",
        "incoming: data/scenarios/no_drift.parquet",
        "incoming: data/production",
    )
    run("dvc", "repro", "drift", cwd=repo, env=s3.env)
    report = files.read_json(repo / paths.DRIFT)
    assert report["rows"] == 600 and report["source"]["files"] == 2
    assert report["source"]["served_versions"] == {"v1.0.0": 600}
    assert report["status"] == "stable"

    # New segments arrive: `dvc update` fetches them, the stage is out of date, repro judges them.
    client.put_object(Bucket=BUCKET, Key=key.format(3), Body=log_segment(repo, "campaign", 1000, 3))
    run("dvc", "update", "data/production.dvc", cwd=repo, env=s3.env)
    assert "drift" in run("dvc", "status", "drift", cwd=repo, env=s3.env).stdout
    run("dvc", "repro", "drift", cwd=repo, env=s3.env)
    report = files.read_json(repo / paths.DRIFT)
    assert report["rows"] == 1600 and report["source"]["files"] == 3
    # 1000 campaign rows among 1600: the move is diluted, but there
    assert report["features"]["contract"]["status"] in ("moderate", "significant")
    assert report["features"]["monthly_charges"]["status"] == "stable"
