"""Logged predictions and outcomes in; each prediction's label (or none) and time window, and an
account of every outcome that could not be joined, out.

**The join.** An outcome (id, label, observed_at) is the truth for the latest prediction of the
same id made at or before observed_at, once per model version: if two versions answered for the
id, each is judged on its own latest answer. Earlier predictions of an id stay unlabelled (the
customer was scored again since), and so does a prediction made after the outcome was observed.

**What is not joined** is counted, never dropped in silence; each outcome lands in exactly one of:
joined, `unknown_id` (no prediction ever carried the id), `label_outside_classes` (not a class of
the model), `before_prediction` (the id was predicted only after the outcome was observed).

**Windows** are by prediction time: a prediction belongs to the window its answer fell in, so a
window's metrics describe the predictions made then, judged by whatever outcomes have arrived for
them. Windows are `window` long and aligned to Monday 1970-01-05 00:00 UTC (a `1d` window is a
UTC day, a `7d` window a week from Monday).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from modelops.params import WINDOW_PATTERN
from modelops.performance.log import Predictions
from modelops.performance.outcomes import Outcomes
from modelops.types import IntArray

_UNIT_SECONDS = {"h": 3600, "d": 86_400, "w": 7 * 86_400}
_ORIGIN_NS = 4 * 86_400 * 10**9  # 1970-01-05T00:00Z, a Monday
_SHOWN = 5  # examples kept of each kind of outcome that was not joined


def window_ns(text: str) -> int:
    """A window length like `7d` (h: hours, d: days, w: weeks) in nanoseconds."""
    if not re.match(WINDOW_PATTERN, text):
        raise ValueError(f"a window is a number and h, d or w (e.g. 7d), not {text!r}")
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]] * 10**9


def window_start(index: int, width_ns: int) -> str:
    """The start of window `index` as ISO-8601 UTC."""
    seconds = (_ORIGIN_NS + index * width_ns) / 1e9
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Unjoined(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Outcomes of one kind that were not joined: how many, and the first few (id or label)."""

    count: int = 0
    examples: list[str] = msgspec.field(default_factory=list)


@dataclass
class Joined:
    """Per prediction its class (index into the classes; -1 unlabelled) and window; per outcome
    kind, the ones not joined."""

    label: IntArray
    window: IntArray
    joined: int
    unknown_id: Unjoined
    label_outside_classes: Unjoined
    before_prediction: Unjoined


def join(
    predictions: Predictions, outcomes: Outcomes, classes: Sequence[str], width_ns: int
) -> Joined:
    """Label each prediction that an outcome is the truth for (see the module's docstring)."""
    n = predictions.rows
    label = np.full(n, -1, dtype=np.int64)
    window = (predictions.time - _ORIGIN_NS) // width_ns
    has_id = np.flatnonzero(predictions.ids != None)  # noqa: E711 - elementwise
    codes, universe = pd.factorize(
        np.concatenate([predictions.ids[has_id], outcomes.ids]), use_na_sentinel=False
    )
    pred_code, out_code = codes[: len(has_id)], codes[len(has_id) :]
    known = np.isin(out_code, pred_code)
    position = {str(c): i for i, c in enumerate(classes)}
    cls = np.array([position.get(v, -1) for v in outcomes.labels], dtype=np.int64)
    candidate = known & (cls >= 0)
    left = pd.DataFrame(
        {"id": out_code[candidate], "at": outcomes.observed[candidate], "cls": cls[candidate]}
    ).sort_values("at", kind="stable")
    matched = np.zeros(len(left), dtype=bool)
    for v in range(len(predictions.versions)):
        mine = has_id[predictions.version[has_id] == v]
        right = pd.DataFrame(
            {
                "id": pred_code[predictions.version[has_id] == v],
                "at": predictions.time[mine],
                "row": mine,
            }
        ).sort_values("at", kind="stable")
        found = pd.merge_asof(left, right, on="at", by="id", direction="backward")
        hit = found["row"].notna().to_numpy()
        label[found["row"].to_numpy()[hit].astype(np.int64)] = found["cls"].to_numpy()[hit]
        matched |= hit
    return Joined(
        label=label,
        window=window.astype(np.int64),
        joined=int(matched.sum()),
        unknown_id=_unjoined(outcomes.ids[~known]),
        # Examples of a wrong label are the distinct labels; of the others, the ids.
        label_outside_classes=_unjoined(outcomes.labels[known & (cls < 0)], distinct=True),
        before_prediction=_unjoined(
            np.asarray(universe, dtype=object)[left["id"].to_numpy()[~matched]]
        ),
    )


def _unjoined(values: npt.NDArray[np.object_], distinct: bool = False) -> Unjoined:
    shown = list(dict.fromkeys(values.tolist())) if distinct else values.tolist()
    return Unjoined(len(values), [str(v) for v in shown[:_SHOWN]])
