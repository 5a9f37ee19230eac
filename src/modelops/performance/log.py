"""Prediction-log segments in; what judging them needs out: per row the model version, the instance
id, the time and the logged probability of every class.

The segments are found as the drift stage finds them (`modelops.drift.incoming.discover`) and
parsed with the same arrow schema, derived from `modelops.logline.LogLine`, minus the inputs.
Parquet or CSV batches carry no ids or times, so here they are an error, not silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from modelops.drift.incoming import discover
from modelops.drift.readers import FORMATS, fail, log_schema, read_log
from modelops.performance.outcomes import utc_nanoseconds
from modelops.types import FloatArray, IntArray


@dataclass
class Predictions:
    """Logged predictions, one row per answered instance, in the log's path order."""

    versions: list[str]  # the model versions that answered, sorted
    version: IntArray  # per row: its position in `versions`
    ids: npt.NDArray[np.object_]  # per row: the instance id, None when the request gave none
    time: npt.NDArray[np.int64]  # per row: when it was answered, UTC nanoseconds
    proba: FloatArray  # rows x classes, in the order of the classes asked for
    files: int

    @property
    def rows(self) -> int:
        return len(self.version)


def read(path: Path | str, model_name: str, classes: Sequence[str]) -> Predictions:
    """Every answered row in the log at `path` (a segment or a directory of them)."""
    schema = log_schema(None, classes)
    names: dict[str, int] = {}
    version: list[IntArray] = []
    ids: list[npt.NDArray[np.object_]] = []
    times: list[npt.NDArray[np.int64]] = []
    proba: list[FloatArray] = []
    files = 0
    for file in discover(path):
        if FORMATS[file.suffix.lower()] != "jsonl":
            raise fail(file, "*", "is not a prediction-log segment (judging needs ids and times)")
        seen = False
        for batch in read_log(file, schema):
            seen = True
            _check_model(file, batch, model_name)
            model = batch.column("model")
            encoded = pc.dictionary_encode(pc.struct_field(model, "version"))
            codes = np.array(
                [names.setdefault(v, len(names)) for v in encoded.dictionary.to_pylist()]
            )
            version.append(codes[encoded.indices.to_numpy(zero_copy_only=False)])
            ids.append(np.asarray(batch.column("id").to_numpy(zero_copy_only=False), dtype=object))
            times.append(utc_nanoseconds(file, "timestamp", batch.column("timestamp")))
            proba.append(_probabilities(file, batch, classes))
        files += seen
    order = sorted(names)
    remap = np.array([order.index(v) for v in names], dtype=np.int64)
    return Predictions(
        versions=order,
        version=remap[np.concatenate(version)] if version else np.array([], np.int64),
        ids=np.concatenate(ids) if ids else np.array([], dtype=object),
        time=np.concatenate(times) if times else np.array([], np.int64),
        proba=np.concatenate(proba) if proba else np.empty((0, len(classes))),
        files=files,
    )


def _check_model(file: Path, batch: pa.RecordBatch, model_name: str) -> None:
    model = batch.column("model")
    if model.null_count:
        raise fail(file, "model", f"absent from {model.null_count} line(s) of the log")
    found = pc.struct_field(model, "name").unique().to_pylist()
    foreign = [n for n in found if n != model_name]
    if foreign:
        raise fail(
            file, "model.name", f"rows of model {foreign[0]!r}", f"but this is {model_name!r}'s"
        )


def _probabilities(file: Path, batch: pa.RecordBatch, classes: Sequence[str]) -> FloatArray:
    probabilities = pc.struct_field(batch.column("output"), "probabilities")
    columns = []
    for cls in classes:
        values = pc.struct_field(probabilities, cls)
        if values.null_count:
            raise fail(
                file,
                f"output.probabilities.{cls}",
                f"absent from {values.null_count} line(s)",
                "(every line must carry the probability of every class of the model)",
            )
        columns.append(values.to_numpy(zero_copy_only=False))
    return np.column_stack(columns) if columns else np.empty((batch.num_rows, 0))
