"""The workspace's model card, test metrics, drift, gate and performance summaries in; the few lines
`modelops summary` prints out, none wider than `WIDTH` columns.

README command (1) ends with it rather than with `dvc metrics show`, whose one table puts every
metric of every file side by side (about 150 columns for metrics.json alone).
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelops import files, gate, paths
from modelops.card import load_card
from modelops.drift.report import DriftSummary
from modelops.errors import ModelopsError, SchemaError

WIDTH = 100
_HEADER_METRICS = ("n_test", "threshold")  # said in the lines above the table, not in it


def summary() -> str:
    """The model, its test metrics two to a line, and the one-line drift verdict."""
    if not paths.CARD.is_file():
        raise ModelopsError(f"{paths.CARD}: not found (run `dvc repro`)")
    card = load_card(paths.CARD)
    metrics = _read(paths.METRICS)
    target = card.feature_schema.target
    raw, train = card.data.get("raw"), card.data.get("train")
    rows = f"{train.rows} training rows" if train and train.rows else "training rows"
    source = f" of {raw.path}" if raw else ""
    classes = ", ".join(map(str, target.classes[:8])) + (", …" if len(target.classes) > 8 else "")
    rule = (
        f"scores {target.positive} at threshold {metrics.get('threshold')}"
        if target.is_binary
        else "the most probable class is the label"
    )
    lines = [
        f"{card.name}: {card.estimator}, {len(card.feature_schema.features)} features, "
        f"{rows}{source}",
        f"classes {classes}; {rule}",
        f"test metrics ({metrics.get('n_test')} rows, {paths.METRICS}):",
    ]
    shown = [(k, v) for k, v in metrics.items() if k not in _HEADER_METRICS]
    for i in range(0, len(shown), 2):
        lines.append("".join(f"  {k:<26} {_number(v):>8}" for k, v in shown[i : i + 2]))
    if paths.DRIFT_SUMMARY.is_file():
        try:
            drift = msgspec.json.decode(paths.DRIFT_SUMMARY.read_bytes(), type=DriftSummary)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SchemaError(f"{paths.DRIFT_SUMMARY}: not a drift summary: {exc}") from None
        lines.append(drift.verdict())
    else:
        lines.append(f"drift: not checked ({paths.DRIFT_SUMMARY} missing: run `dvc repro drift`)")
    if paths.COMPARE.is_file():
        lines.append(gate.decode(paths.COMPARE.read_bytes()).headline())
    if paths.PERFORMANCE_SUMMARY.is_file():
        lines.append(_performance())
    lines.append(
        f"more: dvc metrics show · dvc plots show · modelops drift check · {paths.DRIFT_HTML}"
    )
    return "\n".join(line if len(line) <= WIDTH else line[: WIDTH - 1] + "…" for line in lines)


def _performance() -> str:
    from modelops.params import load  # the log the stage read is params performance.predictions
    from modelops.performance.report import PerformanceSummary

    try:
        p = msgspec.json.decode(paths.PERFORMANCE_SUMMARY.read_bytes(), type=PerformanceSummary)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(
            f"{paths.PERFORMANCE_SUMMARY}: not a performance summary: {exc}"
        ) from None
    return (
        f"performance: {p.status} ({p.degraded}/{p.versions} versions degraded), "
        f"{p.labels} outcomes of {p.predictions} in {load().performance.predictions}"
    )


def _read(path: Any) -> dict[str, Any]:
    try:
        found = files.read_json(path)
    except FileNotFoundError:
        raise ModelopsError(f"{path}: not found (run `dvc repro`)") from None
    if not isinstance(found, dict):
        raise ModelopsError(f"{path}: not a metrics file")
    return found


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
