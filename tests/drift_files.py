"""Rows written where the drift stage reads them, the way they get there: prediction-log segments
encoded with the server's own `LogLine`, or parquet batches; then judged by the stage's reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from modelops.drift import incoming
from modelops.drift.profile import Profile
from modelops.drift.report import DriftReport
from modelops.drift.status import Thresholds
from modelops.logline import LoggedModel, LogLine


def records(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Rows as JSON carries them: plain values, None for missing."""
    sub = frame[names].astype(object)
    return sub.where(sub.notna(), None).to_dict(orient="records")  # type: ignore[no-any-return]


def write_segment(
    path: Path,
    frame: pd.DataFrame,
    names: list[str],
    p1: np.ndarray,
    version: str = "1.0.0",
    model: str = "churn",
) -> None:
    """A prediction-log segment of `frame`'s rows answered with P(class 1) = `p1`."""
    lines = [
        LogLine(
            timestamp=f"2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
            request_id=f"req-{i}",
            model=LoggedModel(model, version),
            inputs=inputs,
            output={"label": int(p >= 0.5), "probabilities": {"0": 1 - float(p), "1": float(p)}},
        )
        for i, (inputs, p) in enumerate(zip(records(frame, names), p1, strict=True))
    ]
    path.write_bytes(msgspec.json.Encoder().encode_lines(lines))


def judge(
    directory: Path,
    profile: Profile,
    frame: pd.DataFrame,
    p1: np.ndarray | None = None,
    thresholds: Thresholds | None = None,
) -> DriftReport:
    """The drift report of `frame`'s rows as the drift stage makes it: read from a parquet batch,
    or, given predicted probabilities `p1`, from a prediction-log segment that carries them."""
    directory.mkdir(parents=True, exist_ok=True)
    if p1 is None:
        path = directory / "batch.parquet"
        frame.to_parquet(path, index=False)
    else:
        path = directory / "predictions.jsonl"
        write_segment(path, frame, list(profile.features), p1, model=profile.model_name)
    counts, _ = incoming.tally(path, profile)
    return counts.report(thresholds or Thresholds())
