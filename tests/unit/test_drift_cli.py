"""`modelops drift check`: a readable table, JSON on request, and exit codes cron and CI can use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops import cli, drift, files, paths, synthetic
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FeatureSchema, drift.Profile]:
    monkeypatch.chdir(tmp_path)
    raw = synthetic.generate_customers(6000, 3)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    profile = drift.build_profile(schema, clean, 10, "churn", model_sha256="a" * 64)
    files.write_json(paths.PROFILE, profile.to_dict())
    for scenario in ("no_drift", "seasonal"):
        path = paths.scenario_path(scenario)
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.generate_customers(3000, 4, scenario).to_parquet(path, index=False)  # type: ignore[arg-type]
    return schema, profile


def _stage_report(profile: drift.Profile, schema: FeatureSchema, scenario: str) -> None:
    frame = schema.to_model_frame(synthetic.generate_customers(3000, 4, scenario))  # type: ignore[arg-type]
    report = drift.check_frame(profile, frame)
    files.write_json(paths.DRIFT, report.to_dict())


def test_check_prints_the_stage_report_as_a_table(
    project: tuple[FeatureSchema, drift.Profile], capsys: pytest.CaptureFixture[str]
) -> None:
    schema, profile = project
    _stage_report(profile, schema, "seasonal")
    assert cli.main(["drift", "check"]) == 0
    out = capsys.readouterr().out
    assert "overall: significant (monthly_charges, data_usage_gb)" in out
    row = next(line for line in out.splitlines() if line.startswith("monthly_charges"))
    assert row.split()[-1] == "moderate"


@pytest.mark.parametrize(
    ("scenario", "fail_on", "code"),
    [
        ("no_drift", "moderate", 0),
        ("seasonal", "significant", 3),
        ("seasonal", "moderate", 3),
    ],
)
def test_fail_on_turns_drift_into_exit_status_3(
    project: tuple[FeatureSchema, drift.Profile], scenario: str, fail_on: str, code: int
) -> None:
    schema, profile = project
    _stage_report(profile, schema, scenario)
    assert cli.main(["drift", "check", "--fail-on", fail_on]) == code


def test_incoming_is_judged_directly_with_the_thresholds_of_params_yaml(
    project: tuple[FeatureSchema, drift.Profile], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["drift", "check", "--incoming", "data/scenarios/seasonal.parquet", "--json"]
    assert cli.main(args) == 0
    judged = json.loads(capsys.readouterr().out)
    assert judged["status"] == "significant" and judged["source"]["files"] == 1
    Path("params.yaml").write_text("drift:\n  min_rows: 5000\n")
    assert cli.main([*args, "--fail-on", "moderate"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "insufficient_data"


def test_a_report_of_another_model_draws_a_warning(
    project: tuple[FeatureSchema, drift.Profile], capsys: pytest.CaptureFixture[str]
) -> None:
    schema, profile = project
    _stage_report(profile, schema, "no_drift")
    retrained = {**profile.to_dict(), "model_sha256": "b" * 64}
    files.write_json(paths.PROFILE, retrained)
    assert cli.main(["drift", "check"]) == 0
    assert "run `dvc repro drift` for a current report" in capsys.readouterr().err


def test_missing_or_broken_inputs_exit_1_with_a_message(
    project: tuple[FeatureSchema, drift.Profile], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["drift", "check"]) == 1
    assert (
        "metrics/drift.json: drift report not found (run `dvc repro drift`"
        in capsys.readouterr().err
    )
    files.write_json(paths.DRIFT, {"status": "fine"})
    assert cli.main(["drift", "check"]) == 1
    assert "metrics/drift.json: not a drift report" in capsys.readouterr().err
    assert cli.main(["drift", "check", "--incoming", "data/nowhere"]) == 1
    assert "data/nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["drift", "check", "--fail-on", "bad"])
    assert usage.value.code == 2
