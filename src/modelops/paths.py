"""Every path that dvc.yaml names, declared once and relative to the repository root."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RAW_DIR = DATA / "raw"
RAW = (
    RAW_DIR / "customers.parquet"
)  # what `generate` writes; params `data.path` may point elsewhere
PREPARED_DIR = DATA / "prepared"
TRAIN = PREPARED_DIR / "train.parquet"
TEST = PREPARED_DIR / "test.parquet"
SCHEMA = PREPARED_DIR / "schema.yaml"
SCENARIOS = DATA / "scenarios"  # generate's demo drift batches, one <scenario>.parquet each
INCOMING = DATA / "incoming"  # the prediction log's home; point params drift.incoming here
DEMO = DATA / "demo"  # simulate's demo prediction log and outcomes, for the performance stage
DEMO_PREDICTIONS = DEMO / "predictions"
DEMO_OUTCOMES = DEMO / "outcomes.csv"

MODELS = Path("models")
MODEL = MODELS / "model.joblib"
CARD = MODELS / "card.json"
PROFILE = MODELS / "profile.json"

METRICS_DIR = Path("metrics")
METRICS = METRICS_DIR / "metrics.json"
PLOTS = METRICS_DIR / "plots"
ROC_PLOTS = PLOTS / "roc"  # one series per scored class: <class>.json
PR_PLOTS = PLOTS / "precision_recall"
CALIBRATION_PLOTS = PLOTS / "calibration"
CONFUSION_PLOT = PLOTS / "confusion.json"
IMPORTANCE_PLOT = PLOTS / "importance.json"
DRIFT = METRICS_DIR / "drift.json"
DRIFT_PLOTS = METRICS_DIR / "drift_plots"  # <feature>.json: reference vs current share per bin
PERFORMANCE = METRICS_DIR / "performance.json"
PERFORMANCE_PLOTS = METRICS_DIR / "performance_plots"  # <version>.json: metrics over time


def scenario_path(name: str) -> Path:
    return SCENARIOS / f"{name}.parquet"
