"""Each stage's main() on a temporary directory: what it reads, what it writes, how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from modelops.card import load_card
from modelops.errors import DataValidationError
from modelops.fitted import check_reference
from modelops.params import load
from modelops.pipeline import build_pipeline, fit
from modelops.schema import FeatureSchema, frame_from_records
from modelops.stages import generate, prepare
from tests.conftest import REPO, SMALL_ROWS, write_params


def test_generate_writes_the_same_bytes_for_the_same_seed(workdir: Path) -> None:
    generate.main()
    first = files.md5(paths.RAW)
    generate.main()
    assert files.md5(paths.RAW) == first
    raw = pd.read_parquet(paths.RAW)
    assert len(raw) == SMALL_ROWS and "churned" in raw


def test_prepare_splits_stratified_and_writes_the_schema(trained_workspace: Path) -> None:
    train = pd.read_parquet(trained_workspace / paths.TRAIN)
    test = pd.read_parquet(trained_workspace / paths.TEST)
    assert len(train) + len(test) == SMALL_ROWS and len(test) == pytest.approx(
        0.2 * SMALL_ROWS, abs=1
    )
    assert abs(train["churned"].mean() - test["churned"].mean()) < 0.01
    assert "customer_id" not in train.columns
    schema = FeatureSchema.from_yaml(trained_workspace / paths.SCHEMA)
    assert schema.names == [c for c in train.columns if c != "churned"]
    text = (trained_workspace / paths.SCHEMA).read_text()
    pinned = yaml.safe_load(text)["features"]
    assert pinned["contract"]["strict"] is True and pinned["region"]["kind"] == "categorical"


def test_card_records_lineage_of_the_artifact(trained_workspace: Path) -> None:
    card = load_card(trained_workspace / paths.CARD)
    ws = trained_workspace
    assert card.name == "churn" and card.estimator == "hist_gradient_boosting"
    assert card.hyperparameters == load(ws / "params.yaml").train.hyperparameters()
    assert card.artifact.sha256 == files.sha256(ws / paths.MODEL)
    assert card.artifact.md5 == files.md5(ws / paths.MODEL)
    assert card.data["raw"].md5 == files.md5(ws / paths.RAW)
    assert card.data["train"].md5 == files.md5(ws / paths.TRAIN)
    assert card.data["test"].md5 == files.md5(ws / paths.TEST)
    assert card.data["train"].rows == len(pd.read_parquet(ws / paths.TRAIN))
    assert set(card.libraries) == {"python", "scikit-learn", "pandas", "numpy", "joblib"}
    assert card.classes == [0, 1]
    rows = card.reference.rows
    assert len(rows) == 32 and any(None in r.values() for r in rows)
    assert check_reference(joblib.load(ws / paths.MODEL), card) == 0.0


def test_saved_artifact_predicts_exactly_like_the_fitted_pipeline(trained_workspace: Path) -> None:
    """Training/serving parity, rows with missing values included, from frames and from JSON records."""
    ws = trained_workspace
    params = load(ws / "params.yaml")
    schema = FeatureSchema.from_yaml(ws / paths.SCHEMA)
    train, test = pd.read_parquet(ws / paths.TRAIN), pd.read_parquet(ws / paths.TEST)
    in_memory = fit(
        build_pipeline(params, schema), schema.to_model_frame(train), schema.target_array(train)
    )
    loaded = joblib.load(ws / paths.MODEL)
    X = schema.to_model_frame(test)
    assert X.isna().any(axis=1).sum() > 50
    expected = in_memory.predict_proba(X)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    records = json.loads(
        json.dumps(
            test[schema.names]
            .astype(object)
            .where(test[schema.names].notna(), None)
            .to_dict("records")
        )
    )
    np.testing.assert_array_equal(
        loaded.predict_proba(frame_from_records(schema, records)), expected
    )


def test_evaluate_writes_metrics_curves_confusion_and_importance(trained_workspace: Path) -> None:
    ws = trained_workspace
    metrics = files.read_json(ws / paths.METRICS)
    assert 0.7 < metrics["roc_auc"] < 0.95
    assert metrics["n_test"] == len(pd.read_parquet(ws / paths.TEST))
    assert (ws / paths.ROC_PLOTS / "1.json").is_file()
    assert (ws / paths.PR_PLOTS / "1.json").is_file()
    assert (ws / paths.CALIBRATION_PLOTS / "1.json").is_file()
    confusion = files.read_json(ws / paths.CONFUSION_PLOT)
    assert len(confusion) == metrics["n_test"]
    importance = files.read_json(ws / paths.IMPORTANCE_PLOT)
    schema = load_card(ws / paths.CARD).feature_schema
    assert {r["feature"] for r in importance} == set(schema.names)
    assert importance[0]["importance"] > 0.01  # something matters, and it's listed first


def test_profile_covers_every_feature_of_the_training_data(trained_workspace: Path) -> None:
    profile = files.read_json(trained_workspace / paths.PROFILE)
    schema = load_card(trained_workspace / paths.CARD).feature_schema
    rows = len(pd.read_parquet(trained_workspace / paths.TRAIN))
    assert list(profile["features"]) == schema.names and profile["rows"] == rows
    for feature in profile["features"].values():
        total = sum(feature["counts"]) + feature["missing"] + feature.get("unseen", 0)
        assert total == rows
    assert list(profile["predictions"]) == ["1"]
    drift_params = load(trained_workspace / "params.yaml").drift
    assert profile["live"]["window"] == drift_params.window
    assert profile["live"]["thresholds"]["min_rows"] == drift_params.min_rows
    assert profile["live"]["thresholds"]["alpha"] == drift_params.alpha


def test_prepare_rejects_bad_data_and_leaves_no_outputs(workdir: Path) -> None:
    generate.main()
    raw = pd.read_parquet(paths.RAW)
    raw = raw.drop(columns=["region"])
    raw.loc[[1, 4], "age"] = 7
    raw.to_parquet(paths.RAW)
    declared = yaml.safe_load(Path("params.yaml").read_text())["data"]["features"]
    write_params(
        workdir,
        generate={"n_rows": SMALL_ROWS},
        data={"features": {**declared, "region": {"kind": "categorical"}}},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "modelops.stages.prepare"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "column 'region': missing from the data" in proc.stderr
    assert "column 'age': 2 values below minimum 18 (rows 2, 5)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not paths.PREPARED_DIR.exists() or not any(paths.PREPARED_DIR.iterdir())


def test_prepare_rejects_a_strict_category_it_does_not_know(workdir: Path) -> None:
    generate.main()
    raw = pd.read_parquet(paths.RAW)
    raw.loc[3, "contract"] = "lifetime"
    raw.to_parquet(paths.RAW)
    with pytest.raises(DataValidationError) as info:
        prepare.main()
    assert (
        "column 'contract': 1 values are not among the declared categories (e.g. 'lifetime'; strict=true) "
        "(rows 4)" in str(info.value)
    )
    assert not paths.TRAIN.exists()


def test_bring_your_own_multiclass_csv_runs_every_stage(workdir: Path, stage_runner) -> None:
    rng = np.random.default_rng(9)
    n = 1500
    usage = rng.gamma(2.0, 10.0, n)
    seats = rng.integers(1, 50, n).astype(float)
    seats[rng.random(n) < 0.05] = np.nan
    tier = rng.choice(["free", "team", "enterprise"], n)
    score = usage / 10 + (tier == "enterprise") * 2 + rng.normal(0, 1, n)
    label = np.where(score > 4.5, "high", np.where(score > 2.5, "mid", "low"))
    Path("data").mkdir()
    pd.DataFrame(
        {
            "account": [f"a{i}" for i in range(n)],
            "usage": usage,
            "seats": seats,
            "tier": tier,
            "value": label,
        }
    ).to_csv("data/accounts.csv", index=False)
    write_params(
        workdir,
        data={
            "path": "data/accounts.csv",
            "target": "value",
            "drop": ["account"],
            "features": {},
            "positive_class": None,
        },
    )

    stage_runner(["prepare", "train", "evaluate", "profile"])

    schema = FeatureSchema.from_yaml(paths.SCHEMA)
    assert schema.target.classes == ["high", "low", "mid"] and schema.target.positive is None
    assert [f.name for f in schema.numeric] == ["usage", "seats"] and schema.categorical[
        0
    ].categories == ["enterprise", "free", "team"]
    metrics = files.read_json(paths.METRICS)
    assert metrics["roc_auc_macro"] > 0.75 and "f1_weighted" in metrics and "roc_auc" not in metrics
    assert sorted(p.name for p in paths.ROC_PLOTS.iterdir()) == [
        "high.json",
        "low.json",
        "mid.json",
    ]
    card = load_card(paths.CARD)
    assert card.classes == ["high", "low", "mid"] and len(card.reference.probabilities[0]) == 3
    assert check_reference(joblib.load(paths.MODEL), card) == 0.0
    assert sorted(files.read_json(paths.PROFILE)["predictions"]) == ["high", "low", "mid"]


def repo_params_text() -> str:
    return (REPO / "params.yaml").read_text()


def line_of(text: str, prefix: str, nth: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if line.startswith(prefix)]
    return lines[nth - 1]


def with_infinite_bound(text: str) -> tuple[str, str]:
    edited = text.replace(
        "monthly_charges: {kind: numeric, min: 0, max: 1000}",
        "monthly_charges: {kind: numeric, min: 0, max: .inf}",
    )
    return (
        edited,
        "params.yaml: data.features.monthly_charges.max: must be a finite number, got inf",
    )


def with_second_train_section(text: str) -> tuple[str, str]:
    edited = text + "train:\n  reference_rows: 5\n"
    first, second = line_of(edited, "train:"), line_of(edited, "train:", 2)
    return edited, f"params.yaml: duplicate key 'train' at line {second} (first at line {first})"


def with_target_dropped(text: str) -> tuple[str, str]:
    edited = text.replace("drop: [customer_id]", "drop: [customer_id, churned]")
    return edited, "params.yaml: data.drop: 'churned' is the target (data.target)"


@pytest.mark.parametrize(
    "edit", [with_infinite_bound, with_second_train_section, with_target_dropped]
)
@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_stages_refuse_params_that_would_half_train_or_train_the_wrong_thing(
    workdir: Path, edit: Any, stage: str
) -> None:
    text, message = edit(repo_params_text())
    assert text != repo_params_text()
    Path("params.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", f"modelops.stages.{stage}"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not paths.MODELS.exists() and not paths.PREPARED_DIR.exists()


def test_prepare_refuses_a_csv_with_a_repeated_column_or_stray_text_among_numbers(
    workdir: Path,
) -> None:
    generate.main()
    raw = pd.read_parquet(paths.RAW).astype({"support_calls": object})
    raw.loc[[2, 9], "support_calls"] = "n/a"
    raw["tenure_months.copy"] = raw["tenure_months"]
    raw.to_csv("data/raw/customers.csv", index=False, header=[*raw.columns[:-1], "tenure_months"])
    write_params(workdir, generate={"n_rows": SMALL_ROWS}, data={"path": "data/raw/customers.csv"})
    proc = subprocess.run(
        [sys.executable, "-m", "modelops.stages.prepare"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "column 'tenure_months': appears 2 times in the header (columns 2, 13)" in proc.stderr
    Path("data/raw/customers.csv").write_text(
        Path("data/raw/customers.csv").read_text().replace(",tenure_months\n", ",spare\n", 1)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "modelops.stages.prepare"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        "column 'support_calls': 2 values are not numbers in a column of numbers (e.g. 'n/a'"
        in proc.stderr
    )
    assert "(rows 3, 10)" in proc.stderr
    assert not paths.PREPARED_DIR.exists() or not any(paths.PREPARED_DIR.iterdir())
    write_params(
        workdir,
        generate={"n_rows": SMALL_ROWS},
        data={"path": "data/raw/customers.csv", "na_values": ["", "n/a"]},
    )
    prepare.main()
    schema = FeatureSchema.from_yaml(paths.SCHEMA)
    assert "spare" in schema.names and "support_calls" in schema.names
