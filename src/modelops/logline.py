"""The prediction log's format: one `LogLine` per answered row, written by the server in segments
the drift stage reads.

A segment is a file of JSON lines ending `SEGMENT_SUFFIX`; while the server still writes it, its
name carries `OPEN_SUFFIX` after that, so a reader that takes only `*.jsonl` never sees half of
one. A reader's column types come from `LogLine`'s own fields, so a field added here reaches the
writer and the reader together.
"""

from __future__ import annotations

from typing import Any

import msgspec

SEGMENT_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".open"  # appended to a segment's name until its writer closes it

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
     "role": "canary"|"shadow"}

    `role` is left out for the primary model's rows, so a server of one model writes the lines it
    always wrote.
    """

    timestamp: str  # when the answer was computed, ISO-8601 UTC with microseconds and a "Z"
    request_id: str
    model: LoggedModel
    inputs: Any  # the request's instance: feature -> value (null for missing), in schema order
    output: Any  # the response's prediction: {"label": ..., "probabilities": {class: p}}
    role: str = PRIMARY  # one of ROLES
