"""One file of incoming rows in (parquet, CSV or a prediction-log segment; a local path or an
fsspec URL); record batches of its rows, checked against the profile's features, out.

Every reader yields record batches of at most `batch_rows` rows (JSON: blocks of
`JSON_BLOCK_BYTES`), so memory depends on the batch size and the profile, never on the file size.
`modelops.drift.incoming` decides which files to read and counts their batches.

pyarrow's compute, csv and json modules are imported by the readers that use them: a check of a
parquet file should not wait for the others (about 0.1 s of the drift command's start).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from modelops.drift.profile import CategoricalProfile, NumericProfile, Profile
from modelops.errors import DataIssue, DataValidationError
from modelops.logline import SEGMENT_SUFFIX, SHADOW, LogLine
from modelops.types import FloatArray, IntArray

BATCH_ROWS = 1 << 16
JSON_BLOCK_BYTES = 1 << 24
PARQUET_BUFFER_BYTES = 1 << 20
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", SEGMENT_SUFFIX: "jsonl"}

File = Path | str  # a local path, or a URL an fsspec filesystem opens


@dataclass
class Batch:
    """One batch of incoming rows, columns already in the form the counters take."""

    source: File
    rows: int
    numeric: dict[str, FloatArray]
    categorical: dict[str, tuple[IntArray, list[Any]]]  # codes (-1 = missing), dictionary
    scores: dict[str, FloatArray] | None = None  # logged probability per profiled class
    versions: Counter[str] = field(default_factory=Counter)
    first_timestamp: str | None = None
    last_timestamp: str | None = None


def fail(path: File, column: str, kind: str, detail: str = "") -> DataValidationError:
    return DataValidationError(str(path), [DataIssue(column, kind, 0, detail=detail)])


def read_file(
    file: File, profile: Profile, batch_rows: int = BATCH_ROWS, fs: Any = None
) -> Iterator[Batch]:
    """The batches of one file, by its suffix; `fs` opens it when it is not a local path."""
    kind = FORMATS[Path(file).suffix.lower()]
    if kind == "parquet":
        yield from _parquet(file, profile, batch_rows, fs)
    elif kind == "csv":
        yield from _csv(file, profile, batch_rows, fs)
    else:
        yield from _jsonl(file, profile, fs)


@contextmanager
def _opened(file: File, fs: Any) -> Iterator[Any]:
    """What pyarrow reads: a local path (opened natively), or the fsspec file of a URL."""
    if fs is None:
        yield str(file)
    else:
        with fs.open(str(file), "rb") as f:
            yield f


# --------------------------------------------------------------------------- column conversion

_NUMERIC_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    pa.types.is_decimal,
    pa.types.is_null,
)


def _numeric(file: File, name: str, array: pa.Array) -> FloatArray:
    if not any(check(array.type) for check in _NUMERIC_TYPES):
        raise fail(file, name, f"holds {array.type} values", "but the feature is numeric")
    values = array.cast(pa.float64()) if array.type != pa.float64() else array
    return _column(values, np.dtype(np.float64), np.nan)  # nulls: the missing bin


def _column(values: pa.Array, dtype: np.dtype[Any], null: float) -> npt.NDArray[Any]:
    """A fixed-width column as numpy, nulls as `null`, read from its buffers: pyarrow's own
    conversions (to_numpy, fill_null) import all of pandas, half a second of the drift command's
    start, to do this."""
    n, offset = len(values), values.offset
    validity, data = values.buffers()[0], values.buffers()[1]
    out = np.frombuffer(data, dtype, count=offset + n)[offset:].astype(
        np.int64 if dtype.kind == "i" else dtype, copy=False
    )
    if values.null_count:
        bits = np.unpackbits(np.frombuffer(validity, np.uint8), count=offset + n, bitorder="little")
        out = np.where(bits[offset:].astype(bool), out, null)
    return out


def _categorical(file: File, name: str, array: pa.Array) -> tuple[IntArray, list[Any]]:
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
            raise fail(file, name, f"holds {kind} values", "but the feature is categorical")
        encoded = array.dictionary_encode()
        indices, dictionary = encoded.indices, encoded.dictionary
    return _column(indices, np.dtype(f"int{indices.type.bit_width}"), -1), dictionary.to_pylist()


def _features(file: File, profile: Profile, batch: pa.RecordBatch) -> Batch:
    numeric: dict[str, FloatArray] = {}
    categorical: dict[str, tuple[IntArray, list[Any]]] = {}
    for name, p in profile.features.items():
        column = batch.column(name)
        if isinstance(p, NumericProfile):
            numeric[name] = _numeric(file, name, column)
        else:
            categorical[name] = _categorical(file, name, column)
    return Batch(file, batch.num_rows, numeric, categorical)


def _require_columns(file: File, present: list[str], profile: Profile) -> None:
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


def _parquet(file: File, profile: Profile, batch_rows: int, fs: Any) -> Iterator[Batch]:
    with _opened(file, fs) as source:
        yield from _parquet_batches(file, source, profile, batch_rows)


def _parquet_batches(file: File, source: Any, profile: Profile, batch_rows: int) -> Iterator[Batch]:
    try:
        schema = pq.read_schema(source)
    except (pa.ArrowException, OSError) as exc:
        raise fail(file, "*", f"cannot be read as parquet: {_first_line(exc)}") from None
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
            source, read_dictionary=string_like, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False
        )
        # One thread: decoding a 64k-row batch's columns in a pool cost more than it saved, and
        # varied with machine load (1M rows on 2 busy cores: 0.35-0.74 s threaded, 0.13-0.16 s not).
        batches = reader.iter_batches(
            batch_size=batch_rows, columns=list(profile.features), use_threads=False
        )
        for batch in batches:
            yield _features(file, profile, batch)
    except (pa.ArrowException, OSError) as exc:
        raise fail(file, "*", f"cannot be read as parquet: {_first_line(exc)}") from None


def _csv(file: File, profile: Profile, batch_rows: int, fs: Any) -> Iterator[Batch]:
    with _opened(file, fs) as source:
        yield from _csv_batches(file, source, profile, batch_rows)


def _csv_header(source: Any) -> list[str]:
    if isinstance(source, str):
        with open(source, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    try:
        return next(csv.reader(text), [])
    finally:
        text.detach()  # leave the file open (and rewound) for the CSV reader
        source.seek(0)


def _csv_batches(file: File, source: Any, profile: Profile, batch_rows: int) -> Iterator[Batch]:
    import pyarrow.csv as pacsv

    header = _csv_header(source)
    if not header:
        raise fail(file, "*", "file is empty (no header line)")
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
            source, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert
        )
        for batch in reader:
            yield _features(file, profile, batch)
    except pa.ArrowInvalid as exc:
        message = _first_line(exc)
        found = re.search(r"CSV column #(\d+)", message)
        column = header[int(found.group(1))] if found and int(found.group(1)) < len(header) else "*"
        raise fail(file, column, f"cannot be read: {message}") from None


def log_schema(inputs: pa.StructType | None, classes: Iterable[str]) -> pa.Schema:
    """The arrow schema of a log line, field for field as `LogLine` declares it; only the
    per-model parts come from the caller: the inputs to read (None: skip them) and the classes
    whose logged probabilities to read."""
    per_model: dict[str, pa.DataType | None] = {
        "inputs": inputs,
        "output": pa.struct(
            [("probabilities", pa.struct([pa.field(c, pa.float64()) for c in classes]))]
        ),
    }
    line = msgspec.inspect.type_info(LogLine)
    assert isinstance(line, msgspec.inspect.StructType)
    return pa.schema(
        [
            pa.field(f.name, per_model[f.name] if f.name in per_model else _arrow_type(f.type))
            for f in line.fields
            if per_model.get(f.name, True) is not None
        ]
    )


def _arrow_type(kind: msgspec.inspect.Type) -> pa.DataType:
    if isinstance(kind, msgspec.inspect.StrType):
        return pa.string()
    if isinstance(kind, msgspec.inspect.StructType):
        return pa.struct([(f.name, _arrow_type(f.type)) for f in kind.fields])
    if isinstance(kind, msgspec.inspect.UnionType):  # an optional field: X | None
        present = [t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(present) == 1:
            return _arrow_type(present[0])
    raise TypeError(f"no arrow type for a log line field of {kind}")


def read_log(file: File, schema: pa.Schema, fs: Any = None) -> Iterator[pa.RecordBatch]:
    """The record batches of one log segment, columns as `schema` says (other fields skipped)."""
    import pyarrow.json as pajson

    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    with _opened(file, fs) as source:
        if (fs.size(str(file)) if fs is not None else Path(file).stat().st_size) == 0:
            return  # a segment rotated before its first answer
        try:
            reader = pajson.open_json(
                source,
                read_options=pajson.ReadOptions(block_size=JSON_BLOCK_BYTES),
                parse_options=options,
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise fail(
                file, "*", "is not a prediction-log segment", f"({_first_line(exc)})"
            ) from None


def _jsonl(file: File, profile: Profile, fs: Any) -> Iterator[Batch]:
    inputs = pa.struct(
        [
            pa.field(name, pa.float64() if isinstance(p, NumericProfile) else pa.string())
            for name, p in profile.features.items()
        ]
    )
    for batch in read_log(file, log_schema(inputs, profile.predictions), fs):
        yield _log_batch(file, profile, batch)


def _log_batch(file: File, profile: Profile, batch: pa.RecordBatch) -> Batch:
    import pyarrow.compute as pc

    # A shadow model's rows score traffic another model answered: the same inputs again, not traffic.
    shadow = pc.fill_null(pc.equal(batch.column("role"), SHADOW), False)
    if pc.any(shadow).as_py():
        batch = batch.filter(pc.invert(shadow))
    inputs = batch.column("inputs")
    if inputs.null_count:
        raise fail(file, "inputs", f"absent from {inputs.null_count} line(s) of the log")
    names = pc.struct_field(batch.column("model"), "name").drop_null().unique().to_pylist()
    foreign = [n for n in names if n != profile.model_name]
    if foreign:
        raise fail(
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
