"""The drift rule's names and numbers in; statuses in order of severity, thresholds and the live
window's settings out.

No numpy here: the command line imports this module to build its parser.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, get_args

import msgspec

if TYPE_CHECKING:
    from modelops.params import DriftParams

Status = Literal["stable", "insufficient_data", "moderate", "significant"]
# The order is the severity: live gauges export a status as its position here, and the alert
# rules and dashboards compare against those numbers (tests/serve/test_deploy.py checks them).
STATUSES: tuple[Status, ...] = get_args(Status)
SEVERITY: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}
SEVERITY_LEGEND = ", ".join(f"{i} {s.replace('_', ' ')}" for i, s in enumerate(STATUSES))
# How a status looks where a person reads it (the HTML report): calm to alarming, in STATUSES' order.
STATUS_COLORS: dict[Status, str] = dict(
    zip(STATUSES, ("#2e7d32", "#6d6d6d", "#e67700", "#c62828"), strict=True)
)


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of `statuses`; insufficient_data when there are none."""
    return max(statuses, key=SEVERITY.__getitem__, default="insufficient_data")


class Thresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a PSI counts as drift: see `modelops.drift.psi` for the rule."""

    moderate: float = 0.1
    significant: float = 0.25
    alpha: float = 0.01
    min_rows: int = 300

    @classmethod
    def from_params(cls, params: DriftParams) -> Thresholds:
        return cls(params.moderate, params.significant, params.alpha, params.min_rows)

    def __post_init__(self) -> None:
        if not 0 < self.moderate < self.significant:
            raise ValueError(
                f"need 0 < moderate < significant, got {self.moderate}, {self.significant}"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")


class LiveSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a server judges its live window, as params.yaml said when the model was profiled."""

    window: int
    thresholds: Thresholds
