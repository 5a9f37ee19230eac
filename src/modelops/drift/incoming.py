"""A file or directory of incoming rows in; bin counts against a frozen profile out, in bounded memory.

Formats, chosen by suffix:

- `.parquet` / `.pq` and `.csv`: one column per profiled feature (other columns are ignored);
  categorical columns are read dictionary-encoded, so a row costs one table lookup.
- `.jsonl`: segments of the server's prediction log (`modelops.logline`), one answered row per
  line. The logged probabilities of the profiled classes give prediction drift; a segment still
  being written (its name ends `.jsonl.open`) is skipped.

A directory is read recursively in path order (log segments are named by UTC time, so this is
time order); hidden files are skipped, and any other file is an error rather than silently left
out. Every reader yields record batches of at most `batch_rows` rows (JSON: blocks of
`JSON_BLOCK_BYTES`), so memory depends on the batch size and the profile, never on the file size.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from modelops.drift.bins import is_missing
from modelops.drift.profile import CategoricalProfile, NumericProfile, Profile
from modelops.drift.report import Source, Tally
from modelops.errors import DataIssue, DataValidationError
from modelops.logline import OPEN_SUFFIX, SEGMENT_SUFFIX, SHADOW, LogLine
from modelops.schema import category_name
from modelops.types import FloatArray, IntArray

BATCH_ROWS = 1 << 16
JSON_BLOCK_BYTES = 1 << 24
PARQUET_BUFFER_BYTES = 1 << 20
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", SEGMENT_SUFFIX: "jsonl"}

Scorer = Callable[[pd.DataFrame], Mapping[str, FloatArray]]


@dataclass
class Batch:
    """One batch of incoming rows, columns already in the form the counters take."""

    source: Path
    rows: int
    numeric: dict[str, FloatArray]
    categorical: dict[str, tuple[IntArray, list[Any]]]  # codes (-1 = missing), dictionary
    scores: dict[str, FloatArray] | None = None  # logged probability per profiled class
    versions: Counter[str] = field(default_factory=Counter)
    first_timestamp: str | None = None
    last_timestamp: str | None = None


def _fail(path: Path | str, column: str, kind: str, detail: str = "") -> DataValidationError:
    return DataValidationError(str(path), [DataIssue(column, kind, 0, detail=detail)])


def discover(path: Path | str) -> list[Path]:
    """The batch files at `path`: the file itself, or every batch file under the directory."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise _fail(path, "*", f"unsupported file type {path.suffix!r}", _KINDS)
        return [path]
    if not path.is_dir():
        raise _fail(path, "*", "not found", "(set drift.incoming to a file or a directory)")
    found: list[Path] = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.name.endswith(OPEN_SUFFIX):
            continue  # the server is still writing it; the next check will read it whole
        if p.suffix.lower() not in FORMATS:
            raise _fail(p, "*", f"unsupported file type {p.suffix!r} in {path}", _KINDS)
        found.append(p)
    if not found:
        raise _fail(path, "*", "holds no batch files", _KINDS)
    return found


_KINDS = "(expected .parquet, .csv, or prediction-log .jsonl segments)"


def iter_batches(
    path: Path | str, profile: Profile, batch_rows: int = BATCH_ROWS
) -> Iterator[Batch]:
    """Every batch of every file at `path`, checked against the profile's features."""
    for file in discover(path):
        kind = FORMATS[file.suffix.lower()]
        if kind == "parquet":
            yield from _parquet(file, profile, batch_rows)
        elif kind == "csv":
            yield from _csv(file, profile, batch_rows)
        else:
            yield from _jsonl(file, profile)


def tally(
    path: Path | str,
    profile: Profile,
    scorer: Scorer | None = None,
    batch_rows: int = BATCH_ROWS,
) -> tuple[Tally, Source]:
    """Count every incoming row into the profile's bins. Rows without logged probabilities are
    scored with `scorer` (a model frame in, probability per profiled class out) when given."""
    counts = Tally(profile)
    files: set[Path] = set()
    versions: Counter[str] = Counter()
    first: str | None = None
    last: str | None = None
    for batch in iter_batches(path, profile, batch_rows):
        files.add(batch.source)
        counts.add_rows(batch.rows)
        for name, values in batch.numeric.items():
            counts.add_numeric(name, values)
        for name, (codes, dictionary) in batch.categorical.items():
            counts.add_codes(name, codes, dictionary)
        scores = batch.scores
        if scores is None and scorer is not None and batch.rows:
            scores = dict(scorer(model_frame(batch, profile)))
        for cls, values in (scores or {}).items():
            counts.add_scores(cls, values)
        versions.update(batch.versions)
        if batch.first_timestamp is not None:
            first = min(first or batch.first_timestamp, batch.first_timestamp)
        if batch.last_timestamp is not None:
            last = max(last or batch.last_timestamp, batch.last_timestamp)
    source = Source(
        path=str(path),
        files=len(files),
        served_versions=dict(sorted(versions.items())),
        first_timestamp=first,
        last_timestamp=last,
    )
    return counts, source


def model_frame(batch: Batch, profile: Profile) -> pd.DataFrame:
    """The batch as the fitted Pipeline takes it: float64 numerics, str categories, NaN missing."""
    columns: dict[str, Any] = {}
    for name in profile.features:
        if name in batch.numeric:
            columns[name] = batch.numeric[name]
        else:
            codes, dictionary = batch.categorical[name]
            names = [np.nan if is_missing(v) else category_name(v) for v in dictionary]
            # The appended NaN is what code -1 (missing) picks. An explicit object Series: pandas
            # would otherwise infer its own string dtype, not the one the Pipeline was fitted on.
            labels = np.array([*names, np.nan], dtype=object)[codes]
            columns[name] = pd.Series(labels, dtype=object)
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------- column conversion

_NUMERIC_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    pa.types.is_decimal,
    pa.types.is_null,
)


def _numeric(file: Path, name: str, array: pa.Array) -> FloatArray:
    if not any(check(array.type) for check in _NUMERIC_TYPES):
        raise _fail(file, name, f"holds {array.type} values", "but the feature is numeric")
    values = pc.cast(array, pa.float64()) if array.type != pa.float64() else array
    return values.to_numpy(zero_copy_only=False)  # nulls become NaN: the missing bin


def _categorical(file: Path, name: str, array: pa.Array) -> tuple[IntArray, list[Any]]:
    if pa.types.is_dictionary(array.type):
        indices, dictionary = array.indices, array.dictionary
    else:
        kind = array.type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_null(kind)
        ):
            raise _fail(file, name, f"holds {kind} values", "but the feature is categorical")
        encoded = array.dictionary_encode()
        indices, dictionary = encoded.indices, encoded.dictionary
    codes = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)
    return codes, dictionary.to_pylist()


def _features(file: Path, profile: Profile, batch: pa.RecordBatch) -> Batch:
    numeric: dict[str, FloatArray] = {}
    categorical: dict[str, tuple[IntArray, list[Any]]] = {}
    for name, p in profile.features.items():
        column = batch.column(name)
        if isinstance(p, NumericProfile):
            numeric[name] = _numeric(file, name, column)
        else:
            categorical[name] = _categorical(file, name, column)
    return Batch(file, batch.num_rows, numeric, categorical)


def _require_columns(file: Path, present: list[str], profile: Profile) -> None:
    absent = [name for name in profile.features if name not in present]
    if absent:
        shown = ", ".join(map(repr, present[:20]))
        raise DataValidationError(
            str(file),
            [
                DataIssue(n, "missing from the file", 0, detail=f"(columns: {shown})")
                for n in absent
            ],
        )


# --------------------------------------------------------------------------- readers


def _parquet(file: Path, profile: Profile, batch_rows: int) -> Iterator[Batch]:
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowException, OSError) as exc:
        raise _fail(file, "*", f"cannot be read as parquet: {_first_line(exc)}") from None
    _require_columns(file, schema.names, profile)
    string_like = [
        name
        for name, p in profile.features.items()
        if isinstance(p, CategoricalProfile)
        and (
            pa.types.is_string(schema.field(name).type)
            or pa.types.is_large_string(schema.field(name).type)
        )
    ]
    try:
        # Dictionary pages decode to codes, never to one Python string per row. Buffered column
        # streams without pre-buffering keep memory flat: pre-buffered, the reader's memory grew
        # with the file (1M -> 5M rows: 106 -> 353 MB of arrow memory; buffered: 53 -> 54 MB).
        reader = pq.ParquetFile(
            file, read_dictionary=string_like, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False
        )
        # One thread: decoding a 64k-row batch's columns in a pool cost more than it saved, and
        # varied with machine load (1M rows on 2 busy cores: 0.35-0.74 s threaded, 0.13-0.16 s not).
        batches = reader.iter_batches(
            batch_size=batch_rows, columns=list(profile.features), use_threads=False
        )
        for batch in batches:
            yield _features(file, profile, batch)
    except (pa.ArrowException, OSError) as exc:
        raise _fail(file, "*", f"cannot be read as parquet: {_first_line(exc)}") from None


def _csv(file: Path, profile: Profile, batch_rows: int) -> Iterator[Batch]:
    with open(file, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    if not header:
        raise _fail(file, "*", "file is empty (no header line)")
    _require_columns(file, header, profile)
    types = {
        name: pa.float64()
        if isinstance(p, NumericProfile)
        else pa.dictionary(pa.int32(), pa.string())
        for name, p in profile.features.items()
    }
    convert = pacsv.ConvertOptions(
        column_types=types, include_columns=list(profile.features), strings_can_be_null=True
    )
    # About batch_rows rows per block at the width of a typical row of numbers and codes.
    block = max(1 << 16, min(1 << 26, batch_rows * 16 * max(len(header), 1)))
    try:
        reader = pacsv.open_csv(
            file, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert
        )
        for batch in reader:
            yield _features(file, profile, batch)
    except pa.ArrowInvalid as exc:
        message = _first_line(exc)
        found = re.search(r"CSV column #(\d+)", message)
        column = header[int(found.group(1))] if found and int(found.group(1)) < len(header) else "*"
        raise _fail(file, column, f"cannot be read: {message}") from None


def _log_schema(profile: Profile) -> pa.Schema:
    """The arrow schema of a log line, field for field as `LogLine` declares it; only the
    per-model parts (the profiled inputs, the scored classes' probabilities) come from the profile."""
    inputs = [
        pa.field(name, pa.float64() if isinstance(p, NumericProfile) else pa.string())
        for name, p in profile.features.items()
    ]
    scored = [pa.field(cls, pa.float64()) for cls in profile.predictions]
    per_model = {
        "inputs": pa.struct(inputs),
        "output": pa.struct([("probabilities", pa.struct(scored))]),
    }
    line = msgspec.inspect.type_info(LogLine)
    assert isinstance(line, msgspec.inspect.StructType)
    return pa.schema(
        [pa.field(f.name, per_model.get(f.name) or _arrow_type(f.type)) for f in line.fields]
    )


def _arrow_type(kind: msgspec.inspect.Type) -> pa.DataType:
    if isinstance(kind, msgspec.inspect.StrType):
        return pa.string()
    if isinstance(kind, msgspec.inspect.StructType):
        return pa.struct([(f.name, _arrow_type(f.type)) for f in kind.fields])
    raise TypeError(f"no arrow type for a log line field of {kind}")


def _jsonl(file: Path, profile: Profile) -> Iterator[Batch]:
    if file.stat().st_size == 0:
        return  # a segment rotated before its first answer
    options = pajson.ParseOptions(
        explicit_schema=_log_schema(profile), unexpected_field_behavior="ignore"
    )
    try:
        reader = pajson.open_json(
            file,
            read_options=pajson.ReadOptions(block_size=JSON_BLOCK_BYTES),
            parse_options=options,
        )
        for batch in reader:
            yield _log_batch(file, profile, batch)
    except pa.ArrowInvalid as exc:
        raise _fail(file, "*", "is not a prediction-log segment", f"({_first_line(exc)})") from None


def _log_batch(file: Path, profile: Profile, batch: pa.RecordBatch) -> Batch:
    # A shadow model's rows score traffic another model answered: the same inputs again, not traffic.
    shadow = pc.fill_null(pc.equal(batch.column("role"), SHADOW), False)
    if pc.any(shadow).as_py():
        batch = batch.filter(pc.invert(shadow))
    inputs = batch.column("inputs")
    if inputs.null_count:
        raise _fail(file, "inputs", f"absent from {inputs.null_count} line(s) of the log")
    names = pc.struct_field(batch.column("model"), "name").drop_null().unique().to_pylist()
    foreign = [n for n in names if n != profile.model_name]
    if foreign:
        raise _fail(
            file,
            "model.name",
            f"rows of model {foreign[0]!r}",
            f"but the profile is of {profile.model_name!r}",
        )
    columns = {name: pc.struct_field(inputs, name) for name in profile.features}
    out = _features(file, profile, pa.RecordBatch.from_pydict(columns))
    probabilities = pc.struct_field(batch.column("output"), "probabilities")
    out.scores = {
        cls: pc.struct_field(probabilities, cls).drop_null().to_numpy(zero_copy_only=False)
        for cls in profile.predictions
    }
    counts = pc.value_counts(pc.struct_field(batch.column("model"), "version").drop_null())
    out.versions = Counter(
        {v["values"]: int(v["counts"]) for v in counts.to_pylist() if v["values"] is not None}
    )
    span = pc.min_max(batch.column("timestamp"))
    out.first_timestamp, out.last_timestamp = span["min"].as_py(), span["max"].as_py()
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
