"""The formats a server writes and the stages read: one `LogLine` per answered row and one
`FeedbackLine` per outcome, in segments named by kind; `Outcome` is an outcome as a client sends it.

A segment is a file of JSON lines named `<kind prefix><UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl`:
`predictions-…` holds `LogLine`s, `feedback-…` holds `FeedbackLine`s, and both kinds may share a
directory. While a server still writes a segment, its name carries `OPEN_SUFFIX` after that, so a
reader that takes only `*.jsonl` never sees half of one. A reader's column types come from these
Structs' own fields, so a field added here reaches the writer and the reader together.

Instance ids are text: the same id in a request, a feedback line and an outcomes file is the same
string, compared exactly (an integer id is its decimal text).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

SEGMENT_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".open"  # appended to a segment's name until its writer closes it
PREDICTION_PREFIX = "predictions-"
FEEDBACK_PREFIX = "feedback-"
# The model version of rows the workspace's own model answered (the demo log): never a registry
# version, which always starts with "v".
WORKSPACE_VERSION = "workspace"
SegmentKind = Literal["predictions", "feedback"]
_KINDS: dict[str, SegmentKind] = {PREDICTION_PREFIX: "predictions", FEEDBACK_PREFIX: "feedback"}

# An instance id: what a client sends beside the features (never a feature) and with its outcome.
InstanceId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Label = str | int  # a class of the model's target, as JSON carries it

# Who wrote a line: the model that answered (the primary, or a canary on its share of traffic), or
# a shadow scoring a request off the response path, whose row nobody received.
PRIMARY, CANARY, SHADOW = "primary", "canary", "shadow"
ROLES = (PRIMARY, CANARY, SHADOW)


class LoggedModel(msgspec.Struct, frozen=True):
    """The model version that answered."""

    name: str
    version: str


class LogLine(msgspec.Struct, frozen=True, omit_defaults=True):
    """One answered row.

    {"timestamp": "<ISO-8601 UTC>", "request_id": "...", "model": {"name": ..., "version": ...},
     "inputs": {<feature>: value|null, ...}, "output": {"label": ..., "probabilities": {...}},
     "id": "<instance id>",          <- only when the request gave the instance one
     "role": "canary"|"shadow"}      <- only for a model other than the primary

    `id` and `role` are left out when they have nothing to say, so a server of one model whose
    clients send no ids writes the lines it always wrote.
    """

    timestamp: str  # when the answer was computed, ISO-8601 UTC with microseconds and a "Z"
    request_id: str
    model: LoggedModel
    inputs: Any  # the request's instance: feature -> value (null for missing), in schema order
    output: Any  # the response's prediction: {"label": ..., "probabilities": {class: p}}
    id: str | None = None  # the instance's id; absent from the line when the request gave none
    role: str = PRIMARY  # one of ROLES; absent from the line for the primary model


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The truth about one instance, as a client sends it (`POST /v1/feedback`'s items) and as an
    outcomes file holds it (columns id, label, observed_at)."""

    id: InstanceId
    label: Label
    observed_at: Annotated[datetime, msgspec.Meta(tz=True)]  # when the outcome happened


class FeedbackLine(msgspec.Struct, frozen=True):
    """One outcome as the feedback log keeps it.

    {"id": "...", "label": 1, "observed_at": "<ISO-8601 UTC>", "received_at": "<ISO-8601 UTC>",
     "request_id": "..."}
    """

    id: str
    label: Label
    observed_at: str  # when the outcome happened, ISO-8601 UTC ("Z")
    received_at: str  # when the server took it, ISO-8601 UTC with microseconds and a "Z"
    request_id: str  # the feedback request's id

    @classmethod
    def of(cls, outcome: Outcome, received_at: float, request_id: str) -> FeedbackLine:
        """The line for an outcome a server received at `received_at` (seconds since the epoch)."""
        observed = outcome.observed_at.astimezone(UTC)
        return cls(
            id=outcome.id,
            label=outcome.label,
            observed_at=observed.isoformat(timespec="microseconds")[:-6] + "Z",
            received_at=utc_timestamp(received_at),
            request_id=request_id,
        )


def utc_timestamp(seconds: float) -> str:
    """Seconds since the epoch as the logs write a time: ISO-8601 UTC, microseconds, "Z"."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def segment_name(prefix: str, seconds: float, pid: int, seq: int) -> str:
    """A closed segment's file name: `<prefix><UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl`."""
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}{stamp}-{pid}-{seq:06d}{SEGMENT_SUFFIX}"


def segment_kind(name: str) -> SegmentKind | None:
    """What a closed segment named `name` holds; None for any other file name."""
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    return next((kind for prefix, kind in _KINDS.items() if name.startswith(prefix)), None)
