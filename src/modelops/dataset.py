"""A raw CSV or parquet file in, a frame out; a clean frame in, a seeded stratified train/test split out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from modelops.errors import WHOLE_TABLE, DataIssue, DataValidationError

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path | str, *, na_values: Sequence[str]) -> pd.DataFrame:
    """Read a CSV or parquet file; a missing, empty or unreadable file, or one with two columns of one
    name, is a DataValidationError. In a CSV only a field whose whole text is one of `na_values`
    (params data.na_values) is missing: pandas' own list ('NA', 'null', 'n/a', ...) is not used."""
    path = Path(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataValidationError(
            str(path),
            [
                DataIssue(
                    WHOLE_TABLE, f"unsupported file type {path.suffix!r} (use .csv or .parquet)", 0
                )
            ],
        )
    if not path.is_file():
        raise DataValidationError(
            str(path),
            [DataIssue(WHOLE_TABLE, "file not found (did you `dvc add` or `dvc pull` it?)", 0)],
        )
    if path.stat().st_size == 0:
        raise DataValidationError(str(path), [DataIssue(WHOLE_TABLE, "file is empty", 0)])
    try:
        if kind == "csv":
            _check_unique_names(path, _csv_header(path))
            return pd.read_csv(
                path, low_memory=False, na_values=list(na_values), keep_default_na=False
            )
        _check_unique_names(path, pq.read_schema(path).names)
        return pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataValidationError(
            str(path), [DataIssue(WHOLE_TABLE, f"cannot be read: {message}", 0)]
        ) from None


def _csv_header(path: Path) -> list[str]:
    """The header's names as written: pandas would rename a second `age` to `age.1`."""
    first = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(name) for name in first.iloc[0].tolist()] if len(first) else []


def _check_unique_names(path: Path, names: list[str]) -> None:
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(i)
    issues = [
        DataIssue(
            name,
            f"appears {len(where)} times in the header",
            0,
            detail=f"(columns {', '.join(map(str, where))})",
        )
        for name, where in positions.items()
        if len(where) > 1
    ]
    if issues:
        raise DataValidationError(str(path), issues)


def split(
    frame: pd.DataFrame, target: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified on the target, so every class keeps its share in both parts."""
    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame[target], random_state=seed, shuffle=True
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)
