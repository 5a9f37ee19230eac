"""`modelops drift check`: a readable table, JSON on request, and exit codes cron and CI can use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelops import cli, files, paths, synthetic
from modelops.drift import incoming
from modelops.drift.profile import Profile, build_profile
from modelops.drift.status import Thresholds
from modelops.params import DataParams
from modelops.schema import infer_and_validate


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Profile:
    monkeypatch.chdir(tmp_path)
    raw = synthetic.generate_customers(6000, 3)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    profile = build_profile(schema, clean, 10, "churn", model_sha256="a" * 64)
    files.write_json(paths.PROFILE, profile.to_dict())
    for scenario in ("no_drift", "seasonal"):
        path = paths.scenario_path(scenario)
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.generate_customers(3000, 4, scenario).to_parquet(path, index=False)  # type: ignore[arg-type]
    return profile


def _stage_report(profile: Profile, scenario: str) -> None:
    """metrics/drift.json as the drift stage writes it for one of the scenario batches."""
    counts, source = incoming.tally(paths.scenario_path(scenario), profile)
    files.write_json(paths.DRIFT, counts.report(Thresholds()).with_source(source).to_dict())


def test_check_prints_the_stage_report_as_a_table(
    project: Profile, capsys: pytest.CaptureFixture[str]
) -> None:
    _stage_report(project, "seasonal")
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
    project: Profile, scenario: str, fail_on: str, code: int
) -> None:
    _stage_report(project, scenario)
    assert cli.main(["drift", "check", "--fail-on", fail_on]) == code


def test_incoming_is_judged_directly_with_the_thresholds_of_params_yaml(
    project: Profile, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["drift", "check", "--incoming", "data/scenarios/seasonal.parquet", "--json"]
    assert cli.main(args) == 0
    judged = json.loads(capsys.readouterr().out)
    assert judged["status"] == "significant" and judged["source"]["files"] == 1
    Path("params.yaml").write_text("drift:\n  min_rows: 5000\n")
    assert cli.main([*args, "--fail-on", "moderate"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "insufficient_data"


def test_a_report_of_another_model_draws_a_warning(
    project: Profile, capsys: pytest.CaptureFixture[str]
) -> None:
    _stage_report(project, "no_drift")
    retrained = {**project.to_dict(), "model_sha256": "b" * 64}
    files.write_json(paths.PROFILE, retrained)
    assert cli.main(["drift", "check"]) == 0
    assert "run `dvc repro drift` for a current report" in capsys.readouterr().err


def test_missing_or_broken_inputs_exit_1_with_a_message(
    project: Profile, capsys: pytest.CaptureFixture[str]
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


def test_the_command_line_starts_without_numpy_pandas_or_pyarrow() -> None:
    code = (
        "import sys\n"
        "from modelops.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'numpy', 'pandas', 'pyarrow', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "[]"


def test_a_check_of_a_parquet_file_loads_only_what_it_runs(project: Profile) -> None:
    """On a million rows the command's start is most of its time: a check of a parquet file
    loads neither pandas nor scikit-learn, nor the CSV and JSON readers, nor the registry;
    scipy.special is loaded, for the p-values."""
    seasonal = str(paths.scenario_path("seasonal"))
    code = (
        "import json, sys\n"
        "from modelops.cli import main\n"
        f"code = main(['drift', 'check', '--incoming', {seasonal!r}])\n"
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, modules = json.loads(out.stdout.splitlines()[-1])
    assert status == 0
    assert "overall: significant" in out.stdout
    loaded = set(modules)
    assert "scipy.special" in loaded and "pyarrow.parquet" in loaded
    unneeded = {"pandas", "sklearn", "pyarrow.csv", "pyarrow.json", "modelops.registry.git"}
    assert not unneeded & loaded, unneeded & loaded
