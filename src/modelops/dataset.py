"""A raw CSV or parquet file in, a frame out; a clean frame in, a seeded stratified train/test split out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from modelops.errors import WHOLE_TABLE, DataIssue, DataValidationError

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV or parquet file; a missing, empty or unreadable file is a DataValidationError."""
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
            return pd.read_csv(path, low_memory=False)
        return pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataValidationError(
            str(path), [DataIssue(WHOLE_TABLE, f"cannot be read: {message}", 0)]
        ) from None


def split(
    frame: pd.DataFrame, target: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified on the target, so every class keeps its share in both parts."""
    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame[target], random_state=seed, shuffle=True
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)
