"""The generate scenarios and the drift stage, run as DVC runs them: main() in a project directory."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from modelops.stages import drift as drift_stage
from modelops.stages import generate, prepare, profile, run, train
from tests.drift_files import write_segment

REPO = Path(__file__).resolve().parents[2]


def params_yaml(incoming: str = "data/scenarios/no_drift.parquet", **drift: Any) -> str:
    return yaml.safe_dump(
        {
            "base": {"seed": 5},
            "generate": {"n_rows": 6000, "scenario_rows": 2000},
            "data": {"drop": ["customer_id"]},
            "train": {"hist_gradient_boosting": {"max_iter": 40}},
            "drift": {"incoming": incoming, **drift},
        }
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with a trained model and its profile, built once by the real stages."""
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(params_yaml())
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in (generate, prepare, train, profile):
            stage.main()
    finally:
        os.chdir(cwd)
    yield root


@pytest.fixture
def at(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    for out in (paths.DRIFT, paths.DRIFT_SUMMARY, paths.DRIFT_PLOTS, paths.DRIFT_HTML):
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    return project


def report() -> dict[str, Any]:
    return files.read_json(paths.DRIFT)  # type: ignore[no-any-return]


def flagged(r: dict[str, Any]) -> set[str]:
    out = {n for n, d in r["features"].items() if d["status"] in ("moderate", "significant")}
    out |= {f"prediction {c}" for c, d in r["predictions"].items() if d["status"] != "stable"}
    return out


def test_generate_writes_one_batch_per_scenario_without_touching_the_training_data(
    at: Path,
) -> None:
    assert sorted(p.name for p in paths.SCENARIOS.iterdir()) == [
        "campaign.parquet",
        "new_region.parquet",
        "no_drift.parquet",
        "seasonal.parquet",
    ]
    assert len(pd.read_parquet(paths.scenario_path("campaign"))) == 2000
    before = files.md5(paths.RAW)
    (at / "params.yaml").write_text(
        params_yaml().replace("scenario_rows: 2000", "scenario_rows: 300")
    )
    try:
        generate.main()
        assert files.md5(paths.RAW) == before  # scenarios draw from streams of their own
        assert len(pd.read_parquet(paths.scenario_path("seasonal"))) == 300
    finally:
        (at / "params.yaml").write_text(params_yaml())
        generate.main()


@pytest.mark.parametrize(
    ("scenario", "truth"),
    [
        ("no_drift", set()),
        ("campaign", {"age", "contract", "tenure_months", "total_charges", "prediction 1"}),
        ("seasonal", {"data_usage_gb", "monthly_charges"}),
        ("new_region", {"age", "region"}),
    ],
)
def test_drift_stage_flags_exactly_what_each_scenario_moves(
    at: Path, scenario: str, truth: set[str]
) -> None:
    (at / "params.yaml").write_text(params_yaml(f"data/scenarios/{scenario}.parquet"))
    drift_stage.main()
    r = report()
    assert flagged(r) == truth
    assert r["status"] == ("stable" if not truth else "significant")
    assert r["rows"] == 2000 and r["source"]["path"].endswith(f"{scenario}.parquet")
    # Prediction drift is reported for plain batches too: the stage scores them with the model.
    assert r["predictions"]["1"]["rows"] == 2000


def test_drift_report_names_the_model_and_plots_every_feature(at: Path) -> None:
    (at / "params.yaml").write_text(params_yaml("data/scenarios/seasonal.parquet"))
    drift_stage.main()
    r = report()
    summary = files.read_json(paths.DRIFT_SUMMARY)
    worst = max(r["features"], key=lambda n: r["features"][n]["psi"])
    assert summary == {
        "status": "significant",
        "severity": 3,
        "rows": 2000,
        "flagged": 2,
        "worst_psi": r["features"][worst]["psi"],
        "worst": worst,
    }
    page = paths.DRIFT_HTML.read_text()
    assert page.startswith("<!doctype html>") and "http" not in page
    assert all(f'aria-label="{name}"' in page for name in [*r["features"], "prediction 1"])
    card = files.read_json(paths.CARD)
    assert r["model"] == {"name": "churn", "sha256": card["artifact"]["sha256"]}
    assert r["thresholds"] == {"moderate": 0.1, "significant": 0.25, "alpha": 0.01, "min_rows": 300}
    plots = {p.stem: files.read_json(p) for p in paths.DRIFT_PLOTS.iterdir()}
    assert set(plots) == {*r["features"], "prediction_1"}
    age = plots["age"]
    assert {row["sample"] for row in age} == {"reference", "current"}
    for sample in ("reference", "current"):
        assert sum(row["share"] for row in age if row["sample"] == sample) == pytest.approx(1.0)


def _write_log(directory: Path, frame: pd.DataFrame, p1: np.ndarray, name: str) -> None:
    features = list(yaml.safe_load(paths.SCHEMA.read_text())["features"])
    write_segment(directory / name, frame, features, p1, version="1.2.0")


def test_drift_stage_reads_the_prediction_log_and_uses_its_logged_probabilities(at: Path) -> None:
    log = at / "data" / "incoming"
    shutil.rmtree(log, ignore_errors=True)
    log.mkdir(parents=True)
    frame = pd.read_parquet(paths.scenario_path("no_drift"))
    # Logged probabilities far from the profile's: proof they are used, not recomputed.
    _write_log(log, frame[:1200], np.full(1200, 0.97), "predictions-20261127T120000-7-0.jsonl")
    _write_log(log, frame[1200:], np.full(800, 0.97), "predictions-20261127T130000-7-1.jsonl")
    (log / "predictions-20261127T140000-7-2.jsonl.open").write_text('{"half": ')
    (at / "params.yaml").write_text(params_yaml("data/incoming"))
    drift_stage.main()
    r = report()
    assert r["rows"] == 2000 and r["source"]["files"] == 2
    assert r["source"]["served_versions"] == {"1.2.0": 2000}
    assert flagged(r) == {"prediction 1"}


def test_bad_incoming_fails_with_the_file_named_and_writes_nothing(
    at: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = at / "data" / "broken.csv"
    frame = pd.read_parquet(paths.scenario_path("no_drift")).drop(columns=["region"])
    frame.to_csv(bad, index=False)
    (at / "params.yaml").write_text(params_yaml("data/broken.csv"))
    with pytest.raises(SystemExit) as exit_info:
        run(drift_stage.main)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "data/broken.csv" in err and "column 'region': missing from the file" in err
    for out in (paths.DRIFT, paths.DRIFT_SUMMARY, paths.DRIFT_PLOTS, paths.DRIFT_HTML):
        assert not out.exists(), out


def test_a_profile_of_another_model_is_refused(
    at: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (at / "params.yaml").write_text(params_yaml())
    original = paths.PROFILE.read_bytes()
    stale = json.loads(original)
    stale["model_sha256"] = "0" * 64
    paths.PROFILE.write_text(json.dumps(stale))
    try:
        with pytest.raises(SystemExit):
            run(drift_stage.main)
    finally:
        paths.PROFILE.write_bytes(original)
    assert "re-run `dvc repro profile`" in capsys.readouterr().err
    assert not paths.DRIFT.exists()


def test_drift_paths_agree_with_dvc_yaml() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    drift_outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages["drift"]["outs"]]
    drift_metrics = [next(iter(o)) for o in stages["drift"]["metrics"]]
    # The per-feature report is data: as a metric it made `dvc metrics show` ~3,000 columns wide.
    assert drift_metrics == [str(paths.DRIFT_SUMMARY)]
    assert drift_outs == [str(p) for p in (paths.DRIFT, paths.DRIFT_PLOTS, paths.DRIFT_HTML)]
    assert str(paths.SCENARIOS) in stages["generate"]["outs"]
    assert "${drift.incoming}" in stages["drift"]["deps"]
    assert str(paths.INCOMING) not in str(stages)  # the log directory is nobody's output
