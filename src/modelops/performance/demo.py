"""A seed and the workspace model's probabilities in; a demo prediction log with instance ids and the
outcomes known for it, with a concept change halfway, out.

The demo: `DAYS` days of a server answering for `ROWS` fresh customers of the training population
(`synthetic.generate_customers(..., "no_drift")`, so a drift check stays quiet), one segment per
day, starting Monday `START`. A customer's outcome is observed `DELAY_DAYS` after the prediction
(uniform), and `ARRIVAL` of them ever reach the outcomes file; the file is as known at the end of
the log, so the last weeks have few labels or none. From day `CHANGE_DAY` the truth follows
`synthetic.competitor_churn` instead of the original rule: same inputs, another outcome, which
only the performance stage can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from modelops import synthetic
from modelops.logline import (
    PREDICTION_PREFIX,
    WORKSPACE_VERSION,
    LoggedModel,
    LogLine,
    segment_name,
    utc_timestamp,
)
from modelops.schema import FeatureSchema
from modelops.types import FloatArray

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday: 7d windows hold whole demo weeks
DAYS = 56
CHANGE_DAY = 28
ROWS = 20_000
DELAY_DAYS = (7.0, 35.0)
ARRIVAL = 0.9
_DAY = 86_400.0


def customers(seed: int) -> pd.DataFrame:
    """The demo's customers in answer order, with `answered` (seconds since the epoch) and
    `truth` (the label that will be observed: the original rule, then the changed one)."""
    frame = synthetic.generate_customers(ROWS, seed, "no_drift")
    rng = np.random.default_rng([seed, 2000])
    answered = np.sort(START.timestamp() + rng.uniform(0, DAYS * _DAY, ROWS)).round(3)
    changed = answered >= START.timestamp() + CHANGE_DAY * _DAY
    truth = np.where(changed, synthetic.competitor_churn(frame, seed), frame["churned"])
    return frame.assign(answered=answered, truth=truth)


def log_segments(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    proba: FloatArray,
    classes: Sequence[Any],
    labels: Sequence[Any],
    model_name: str,
) -> dict[str, bytes]:
    """File name -> bytes of each day's prediction-log segment, lines as a server writes them."""
    sub = frame[schema.names].astype(object)
    inputs = sub.where(sub.notna(), None).to_dict(orient="records")
    model = LoggedModel(model_name, WORKSPACE_VERSION)
    day = ((frame["answered"].to_numpy() - START.timestamp()) // _DAY).astype(int)
    encoder = msgspec.json.Encoder()
    segments: dict[str, bytes] = {}
    for d in np.unique(day).tolist():
        rows = np.flatnonzero(day == d).tolist()
        lines = [
            LogLine(
                timestamp=utc_timestamp(float(frame["answered"].iat[i])),
                request_id=f"demo-{i:06d}",
                model=model,
                inputs=inputs[i],
                output={
                    "label": labels[i],
                    "probabilities": {
                        str(c): float(p) for c, p in zip(classes, proba[i], strict=True)
                    },
                },
                id=str(frame["customer_id"].iat[i]),
            )
            for i in rows
        ]
        name = segment_name(PREDICTION_PREFIX, START.timestamp() + d * _DAY, 1, d + 1)
        segments[name] = encoder.encode_lines(lines)
    return segments


def outcomes(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The outcomes file as known at the end of the log: id, label, observed_at (ISO-8601 UTC),
    in the order they were observed."""
    rng = np.random.default_rng([seed, 3000])
    delay = rng.uniform(*DELAY_DAYS, len(frame)) * _DAY
    arrives = rng.random(len(frame)) < ARRIVAL
    observed = (frame["answered"].to_numpy() + delay).round()
    known = arrives & (observed <= START.timestamp() + DAYS * _DAY)
    order = np.argsort(observed[known], kind="stable")
    stamps = [
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in observed[known][order].tolist()
    ]
    return pd.DataFrame(
        {
            "id": frame["customer_id"].to_numpy()[known][order],
            "label": frame["truth"].to_numpy()[known][order],
            "observed_at": stamps,
        }
    )
