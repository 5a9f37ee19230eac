"""The performance statuses in order of severity (no numpy here: the command line imports this
module to build its parser). The rule that assigns them is `modelops.performance.judge.status`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

Status = Literal["ok", "insufficient_data", "degraded"]
STATUSES: tuple[Status, ...] = get_args(Status)  # in order of severity
SEVERITY: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of `statuses`; insufficient_data when there are none."""
    return max(statuses, key=SEVERITY.__getitem__, default="insufficient_data")
