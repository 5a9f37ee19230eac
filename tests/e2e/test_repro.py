"""A fresh clone, real git and real DVC: `dvc repro`, status, determinism, experiments, your own data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from tests.conftest import SMALL_ROWS, fresh_clone, run, write_params

STAGES = ["generate", "prepare", "train", "evaluate", "profile"]


def dvc(repo: Path, *args: str, check: bool = True) -> str:
    proc = run("dvc", *args, cwd=repo, check=check)
    return proc.stdout + proc.stderr


def lock_hashes(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out.get("md5", "")
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = fresh_clone(tmp_path_factory.mktemp("clone") / "repo")
    write_params(repo, generate={"n_rows": SMALL_ROWS})
    out = dvc(repo, "repro")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "reproduce on small data", cwd=repo)
    return repo


def test_fresh_clone_reproduces_every_output_with_its_lineage(repo: Path) -> None:
    for path in (
        paths.RAW,
        paths.TRAIN,
        paths.TEST,
        paths.SCHEMA,
        paths.MODEL,
        paths.CARD,
        paths.PROFILE,
        paths.METRICS,
    ):
        assert (repo / path).is_file(), path
    hashes = lock_hashes(repo)
    assert hashes[str(paths.MODEL)] == files.md5(repo / paths.MODEL)
    assert hashes[str(paths.RAW)] == files.md5(repo / paths.RAW)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert (
        lock["stages"]["train"]["params"]["params.yaml"]["train"]["estimator"]
        == "hist_gradient_boosting"
    )
    card = files.read_json(repo / paths.CARD)
    assert card["data"]["raw"]["md5"] == hashes[str(paths.RAW)]
    assert card["artifact"]["md5"] == hashes[str(paths.MODEL)]


def test_second_repro_does_nothing_and_status_is_clean(repo: Path) -> None:
    out = dvc(repo, "repro")
    assert "Running stage" not in out
    assert "Data and pipelines are up to date." in out
    assert "Data and pipelines are up to date." in dvc(repo, "status")
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""


def test_forced_repro_twice_gives_identical_outputs_and_predictions(repo: Path) -> None:
    runs = []
    for _ in range(2):
        dvc(repo, "repro", "--force")
        runs.append(
            (
                lock_hashes(repo),
                (repo / paths.METRICS).read_bytes(),
                files.read_json(repo / paths.CARD)["reference"]["probabilities"],
            )
        )
    assert runs[0] == runs[1]
    # and identical to the committed run: nothing in the pipeline depends on time or chance
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""


def test_a_params_typo_fails_repro_naming_the_key(repo: Path) -> None:
    original = (repo / "params.yaml").read_text()
    try:
        (repo / "params.yaml").write_text(original.replace("learning_rate:", "learnig_rate:"))
        proc = run("dvc", "repro", cwd=repo, check=False)
        assert proc.returncode != 0
        assert (
            "unknown field `learnig_rate` - at `$.train.hist_gradient_boosting`"
            in proc.stdout + proc.stderr
        )
    finally:
        (repo / "params.yaml").write_text(original)


def test_experiment_with_a_changed_param_shows_in_exp_show_and_metrics_diff(repo: Path) -> None:
    dvc(repo, "exp", "run", "-n", "faster", "-S", "train.hist_gradient_boosting.learning_rate=0.3")
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    text = json.dumps(shown)
    assert "faster" in text and "0.3" in text
    diff = dvc(repo, "metrics", "diff", "HEAD")
    assert "roc_auc" in diff and "log_loss" in diff
    params_diff = dvc(repo, "params", "diff", "HEAD")
    assert "train.hist_gradient_boosting.learning_rate" in params_diff and "0.05" in params_diff


def test_bring_your_own_multiclass_file_with_dvc_add(tmp_path: Path) -> None:
    repo = fresh_clone(tmp_path / "repo")
    rng = np.random.default_rng(4)
    n = 1200
    usage = rng.gamma(2.0, 10.0, n)
    plan = rng.choice(["free", "pro", "business"], n)
    score = usage / 8 + (plan == "business") * 2 + rng.normal(0, 1, n)
    own = repo / "data" / "own" / "accounts.parquet"
    own.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "usage": usage,
            "plan": plan,
            "segment": np.select([score > 5, score > 3], ["gold", "silver"], "bronze"),
        }
    ).to_parquet(own)
    dvc(repo, "add", "data/own/accounts.parquet")
    write_params(
        repo,
        data={"path": "data/own/accounts.parquet", "target": "segment", "drop": [], "features": {}},
    )
    out = dvc(repo, "repro", "prepare", "train", "evaluate", "profile")
    assert "Running stage 'generate'" not in out
    metrics = files.read_json(repo / paths.METRICS)
    assert metrics["roc_auc_macro"] > 0.75 and "f1_macro" in metrics
    schema = yaml.safe_load((repo / paths.SCHEMA).read_text())
    assert schema["target"]["classes"] == ["bronze", "gold", "silver"]
    assert schema["features"]["plan"]["categories"] == ["business", "free", "pro"]
    assert "Data and pipelines are up to date." in dvc(
        repo, "status", "prepare", "train", "evaluate", "profile"
    )
