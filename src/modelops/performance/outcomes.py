"""Outcome files and feedback segments in; one table of outcomes (id, label name, observed_at) out,
one per id.

Two ways in, one table out:

- an **outcomes file**, `.csv` or `.parquet`, with the columns `OUTCOME_COLUMNS` (id, label,
  observed_at; others are ignored): ids are text (integers become their decimal text), labels are
  the model's class names (`1`, `churned`), observed_at is ISO-8601 with a zone (`…Z` or `+02:00`;
  in parquet, a timestamp with a time zone). A time without a zone is an error, not a guess;
- **feedback segments** (`feedback-*.jsonl`, `modelops.logline.FeedbackLine`), as a server writes
  them from `POST /v1/feedback`.

A path is a file or a directory, read recursively in path order: there, `feedback-*.jsonl`,
`.csv` and `.parquet` files are outcomes, `predictions-*.jsonl` segments (the same directory may
hold a server's whole log) and hidden or still-open files are skipped, and anything else is an
error. An id with several outcomes keeps the one observed last (a correction replaces an earlier
report); how many were replaced is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelops.category import category_name
from modelops.errors import DataIssue, DataValidationError
from modelops.logline import OPEN_SUFFIX, SEGMENT_SUFFIX, FeedbackLine, segment_kind

OUTCOME_COLUMNS = ("id", "label", "observed_at")  # THE outcomes file format
_FILE_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_EXPECTED = "(expected outcome files .csv/.parquet or feedback-*.jsonl segments)"
_feedback = msgspec.json.Decoder(FeedbackLine)


@dataclass
class Outcomes:
    """Outcomes, one per id: label names as text, observation times as UTC nanoseconds."""

    ids: npt.NDArray[np.object_]
    labels: npt.NDArray[np.object_]
    observed: npt.NDArray[np.int64]
    rows: int  # outcomes read, before keeping one per id
    files: int
    replaced: int  # outcomes replaced by a later one for the same id


def _fail(path: Path | str, column: str, kind: str, count: int = 0, rows: Any = ()) -> Exception:
    return DataValidationError(str(path), [DataIssue(column, kind, count, tuple(rows))])


def discover(path: Path | str) -> list[Path]:
    """The outcome files and feedback segments at `path` (a file, or a directory's, recursively)."""
    path = Path(path)
    if path.is_file():
        if _kind(path) is None:
            raise _fail(path, "*", f"not an outcomes file or feedback segment {_EXPECTED}")
        return [path]
    if not path.is_dir():
        raise _fail(path, "*", "not found (set performance.outcomes to files or directories)")
    found = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.name.endswith(OPEN_SUFFIX) or segment_kind(p.name) == "predictions":
            continue
        if _kind(p) is None:
            raise _fail(p, "*", f"unexpected file in {path} {_EXPECTED}")
        found.append(p)
    return found


def _kind(path: Path) -> str | None:
    if path.suffix.lower() == SEGMENT_SUFFIX:
        return "feedback" if segment_kind(path.name) == "feedback" else None
    return _FILE_KINDS.get(path.suffix.lower())


def read(paths: Sequence[Path | str]) -> Outcomes:
    """Every outcome at `paths`, one per id (the latest observed)."""
    frames = []
    files = 0
    for path in paths:
        for file in discover(path):
            frame = _read_file(file)
            files += 1
            if len(frame):
                frames.append(frame)
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({"id": [], "label": [], "observed": np.array([], np.int64)})
    )
    latest = table.sort_values("observed", kind="stable").drop_duplicates("id", keep="last")
    return Outcomes(
        ids=latest["id"].to_numpy(object),
        labels=latest["label"].to_numpy(object),
        observed=latest["observed"].to_numpy(np.int64),
        rows=len(table),
        files=files,
        replaced=len(table) - len(latest),
    )


def _read_file(file: Path) -> pd.DataFrame:
    kind = _kind(file)
    if kind == "feedback":
        return _read_feedback(file)
    try:
        if kind == "csv":
            types = {name: pa.string() for name in OUTCOME_COLUMNS}
            table = pacsv.read_csv(
                file,
                # An empty field is a missing value, refused below with its row.
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True, null_values=[""]
                ),
            )
        else:
            table = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise _fail(file, "*", f"cannot be read as {kind}: {str(exc).splitlines()[0]}") from None
    absent = [c for c in OUTCOME_COLUMNS if c not in table.column_names]
    if absent:
        shown = ", ".join(map(repr, table.column_names[:20]))
        raise DataValidationError(
            str(file),
            [
                DataIssue(c, "missing from the outcomes file", 0, detail=f"(columns: {shown})")
                for c in absent
            ],
        )
    return pd.DataFrame(
        {
            "id": _text(file, "id", table.column("id")),
            "label": _text(file, "label", table.column("label")),
            "observed": utc_nanoseconds(file, "observed_at", table.column("observed_at")),
        }
    )


def _read_feedback(file: Path) -> pd.DataFrame:
    lines = []
    with open(file, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                lines.append(_feedback.decode(line))
            except msgspec.DecodeError as exc:
                raise _fail(file, "*", f"line {number} is not a feedback line: {exc}") from None
    stamps = pa.array([x.observed_at for x in lines], pa.string())
    return pd.DataFrame(
        {
            "id": np.array([x.id for x in lines], dtype=object),
            "label": np.array([category_name(x.label) for x in lines], dtype=object),
            "observed": utc_nanoseconds(file, "observed_at", stamps),
        }
    )


def _text(file: Path, column: str, values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.object_]:
    """A column as text, each distinct value named once (`category_name`: 1.0 is "1")."""
    _no_nulls(file, column, values)
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = np.array([category_name(v) for v in encoded.dictionary.to_pylist()], dtype=object)
    return names[encoded.indices.to_numpy(zero_copy_only=False)]


def utc_nanoseconds(
    file: Path | str, column: str, values: pa.ChunkedArray | pa.Array
) -> npt.NDArray[np.int64]:
    """ISO-8601 texts with a zone, or zoned timestamps, as nanoseconds since the epoch (UTC)."""
    _no_nulls(file, column, values)
    kind = values.type
    if pa.types.is_timestamp(kind) and kind.tz is None:
        raise _fail(file, column, "holds timestamps without a time zone (write them in UTC)")
    if not (
        pa.types.is_timestamp(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        raise _fail(file, column, f"holds {kind} values, not ISO-8601 times")
    try:
        stamps = pc.cast(values, pa.timestamp("ns", tz="UTC"))
    except pa.ArrowInvalid:
        texts = values.to_pylist()
        bad = [i + 1 for i, t in enumerate(texts) if not _zoned(t)]
        raise _fail(
            file,
            column,
            "values are not ISO-8601 times with a zone (e.g. 2026-11-27T10:00:00Z)",
            len(bad),
            bad[:5],
        ) from None
    return np.asarray(stamps.to_numpy(zero_copy_only=False)).astype("datetime64[ns]").view(np.int64)


def _zoned(text: str) -> bool:
    try:
        pa.scalar(text).cast(pa.timestamp("ns", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _no_nulls(file: Path | str, column: str, values: pa.ChunkedArray | pa.Array) -> None:
    if values.null_count:
        mask = pc.is_null(values)
        rows = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False))) + 1
        raise _fail(file, column, "values are missing", int(values.null_count), rows[:5].tolist())
