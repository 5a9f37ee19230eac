"""Every path that dvc.yaml names (and dvc.yaml, dvc.lock and params.yaml themselves), declared once
and relative to the repository root."""

from __future__ import annotations

from pathlib import Path

DVC_YAML = Path("dvc.yaml")  # the stage graph, and the registry's `artifacts:`
DVC_LOCK = Path("dvc.lock")  # what the last run of each stage used and produced
PARAMS_FILE = Path("params.yaml")  # every stage's parameters

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

# Written by `modelops registry` whenever a stage changes hands: the version (and model md5) each
# stage holds. The compare stage depends on the entry for params' gate.against.
CHAMPIONS = Path("champions.yaml")

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
# The drift report is data, not a DVC metric: ~10 nested keys per feature would make every
# `dvc metrics show` a table thousands of columns wide. Its summary is the metric.
DRIFT = METRICS_DIR / "drift.json"
COMPARE = METRICS_DIR / "compare.json"  # the candidate against the champion, in full
GATE = METRICS_DIR / "gate.json"  # its summary as DVC metrics: verdict, difference, interval
DRIFT_SUMMARY = METRICS_DIR / "drift_summary.json"
DRIFT_PLOTS = METRICS_DIR / "drift_plots"  # <feature>.json: reference vs current share per bin
DRIFT_HTML = METRICS_DIR / "drift_report.html"  # the report as one self-contained page
PERFORMANCE = METRICS_DIR / "performance.json"  # per version and window, in full
PERFORMANCE_SUMMARY = METRICS_DIR / "performance_summary.json"  # the DVC metric: status, counts
PERFORMANCE_PLOTS = METRICS_DIR / "performance_plots"  # <version>.json: metrics over time


def scenario_path(name: str) -> Path:
    return SCENARIOS / f"{name}.parquet"
