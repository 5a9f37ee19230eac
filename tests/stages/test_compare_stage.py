"""The compare stage's main() without a champion, and the comparison it makes against real trained
champions: a weaker one, one that reads a feature the candidate's rows lack, the model itself."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import joblib
import pandas as pd
import pytest

from modelops import challenge, files, gate, paths
from modelops.card import load_card
from modelops.errors import ParamsError, RegistryError
from modelops.params import load
from tests.conftest import REPO, SMALL_ROWS, run_stages, write_params


@contextmanager
def inside(directory: Path) -> Iterator[None]:
    cwd = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(cwd)


def contender(directory: Path) -> challenge.Contender:
    return challenge.Contender(
        load_card(directory / paths.CARD), joblib.load(directory / paths.MODEL)
    )


def trained(directory: Path, **overrides: dict[str, object]) -> challenge.Contender:
    directory.mkdir(parents=True)
    write_params(directory, generate={"n_rows": SMALL_ROWS}, **overrides)
    with inside(directory):
        run_stages(["generate", "prepare", "train"])
    return contender(directory)


@pytest.fixture
def workspace(trained_workspace: Path, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "ws"
    shutil.copytree(trained_workspace, root)
    shutil.copy(REPO / paths.CHAMPIONS, root / paths.CHAMPIONS)
    with inside(root):
        yield root


def judge(ws: Path, champion: challenge.Contender | None) -> gate.Comparison:
    ref = None
    if champion is not None:
        ref = gate.ChampionRef("prod", "v1.0.0", "c" * 40, champion.card.artifact.md5)
    test = pd.read_parquet(ws / paths.TEST)
    return challenge.compare(load(ws / "params.yaml"), contender(ws), test, ref, champion)


def test_without_a_champion_the_stage_writes_no_champion_and_the_candidates_metrics(
    workspace: Path,
) -> None:
    run_stages(["compare"])
    comparison = gate.decode((workspace / paths.COMPARE).read_bytes())
    assert comparison.verdict == "no_champion" and comparison.champion is None
    assert comparison.metrics == {"candidate": files.read_json(workspace / paths.METRICS)}
    assert files.read_json(workspace / paths.GATE) == {
        "verdict": "no_champion",
        "delta": None,
        "low": None,
        "high": None,
    }


def test_the_stage_refuses_a_gate_metric_evaluate_does_not_write(workspace: Path) -> None:
    write_params(workspace, generate={"n_rows": SMALL_ROWS}, gate={"metric": "roc_auc_macro"})
    with pytest.raises(ParamsError, match=r"gate\.metric: 'roc_auc_macro' is not a metric"):
        run_stages(["compare"])
    assert not (workspace / paths.COMPARE).exists()


def test_the_stage_needs_champions_yaml(workspace: Path) -> None:
    (workspace / paths.CHAMPIONS).unlink()
    with pytest.raises(RegistryError, match="run `modelops registry sync`"):
        run_stages(["compare"])


def test_a_weaker_champion_makes_the_candidate_better(workspace: Path, tmp_path: Path) -> None:
    weak = trained(tmp_path / "weak", train={"hist_gradient_boosting": {"max_iter": 3}})
    comparison = judge(workspace, weak)
    assert comparison.verdict == "better", comparison.rule
    assert comparison.interval is not None and comparison.delta is not None
    assert 0 < comparison.interval.low <= comparison.delta <= comparison.interval.high
    metrics = comparison.metrics
    assert comparison.delta == pytest.approx(
        metrics["candidate"]["roc_auc"] - metrics["champion"]["roc_auc"], abs=2e-6
    )
    assert comparison.delong is not None and comparison.delong.z > 0
    # Seeded: the same inputs give the same bytes.
    assert gate.encode(judge(workspace, weak)) == gate.encode(comparison)


def test_a_champion_reading_a_feature_the_rows_lack_is_not_comparable(
    workspace: Path, tmp_path: Path
) -> None:
    # The candidate no longer reads region, so its test split has no such column.
    directory = tmp_path / "candidate"
    candidate = trained(directory, data={"drop": ["customer_id", "region"]})
    comparison = challenge.compare(
        load(directory / "params.yaml"),
        candidate,
        pd.read_parquet(directory / paths.TEST),
        gate.ChampionRef("prod", "v1.0.0", "c" * 40, "0" * 32),
        contender(workspace),
    )
    assert comparison.verdict == "not_comparable"
    assert comparison.rule == (
        "not_comparable: the champion reads region, which the candidate's test rows lack"
    )
    assert "champion" not in comparison.metrics and comparison.delta is None
    assert comparison.headline() == (
        "gate: not_comparable against v1.0.0 (holding prod): the champion reads region, which "
        "the candidate's test rows lack"
    )


def test_the_champion_being_the_candidate_is_no_worse_without_a_bootstrap(
    workspace: Path,
) -> None:
    comparison = judge(workspace, contender(workspace))
    assert comparison.verdict == "no_worse" and comparison.delta == 0.0
    assert comparison.interval is not None and comparison.interval.resamples == 0
    assert "the champion is this very model" in comparison.rule
