"""A file or directory of incoming rows in; bin counts against a frozen profile out, in bounded memory.

Formats, chosen by suffix:

- `.parquet` / `.pq` and `.csv`: one column per profiled feature (other columns are ignored);
  categorical columns are read dictionary-encoded, so a row costs one table lookup.
- `.jsonl`: segments of the server's prediction log (`modelops.logline`), one answered row per
  line. The logged probabilities of the profiled classes give prediction drift.

A directory is read recursively in path order (log segments are named by UTC time, so this is
time order). In it, `.jsonl` files are known by name: `predictions-*.jsonl` segments are read,
`feedback-*.jsonl` segments (outcomes, for the `performance` stage) are skipped, and any other
`.jsonl` is an error: nothing says what it holds. Hidden files and segments still being written
(`*.jsonl.open`) are skipped; any other file is an error rather than silently left out. A `.jsonl`
file named on its own is read as prediction-log lines whatever its name, unless it is named as
a feedback segment.

Files are read in batches (`modelops.drift.readers`), so memory depends on the batch size and the
profile, never on the file size. Counting is per file (`count_file`, a `Part` of plain counts)
and parts add up (`combine`): the same two functions run here in one process and on a Dask
cluster (`modelops.drift.distributed`), where a file may also live in object storage (an fsspec
filesystem in `fs`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelops.category import category_name
from modelops.drift.bins import is_missing
from modelops.drift.profile import Profile
from modelops.drift.readers import BATCH_ROWS, FORMATS, Batch, File, fail, read_file
from modelops.drift.report import Source, Tally
from modelops.logline import OPEN_SUFFIX, segment_kind
from modelops.types import FloatArray, IntArray

if TYPE_CHECKING:
    import pandas as pd

    Scorer = Callable[[pd.DataFrame], Mapping[str, FloatArray]]


@dataclass
class Part:
    """The counts of some files: plain arrays in the profile's bin order, so that parts travel
    between processes cheaply and add up exactly, in any order."""

    rows: int = 0
    features: dict[str, IntArray] = field(default_factory=dict)
    predictions: dict[str, IntArray] = field(default_factory=dict)
    files: int = 0  # files that held at least one row
    versions: Counter[str] = field(default_factory=Counter)
    first_timestamp: str | None = None
    last_timestamp: str | None = None


_KINDS = "(expected .parquet, .csv, or prediction-log .jsonl segments)"
_JSONL_NAMES = (
    "prediction-log segments are named predictions-*.jsonl (feedback-*.jsonl hold outcomes and "
    "are skipped); rename it, or name the file itself"
)


def _wanted(name: str, where: File) -> bool:
    """Whether a file found in a directory is read: THE rule for local directories and object
    storage alike. Raises for a file nothing says how to read."""
    if name.endswith(OPEN_SUFFIX):
        return False  # the server is still writing it; the next check will read it whole
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise fail(name, "*", f"unsupported file type {suffix!r} in {where}", _KINDS)
    if FORMATS[suffix] != "jsonl":
        return True
    kind = segment_kind(Path(name).name)
    if kind is None:
        raise fail(name, "*", f"unknown .jsonl file in {where}", f"({_JSONL_NAMES})")
    return kind == "predictions"


def _check_named_file(name: File) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise fail(name, "*", f"unsupported file type {suffix!r}", _KINDS)
    if segment_kind(Path(name).name) == "feedback":
        raise fail(name, "*", "is a feedback segment (outcomes), not rows to judge")


def discover(path: File) -> list[Path]:
    """The batch files at `path`: the file itself, or every batch file under the directory."""
    path = Path(path)
    if path.is_file():
        _check_named_file(path)
        return [path]
    if not path.is_dir():
        raise fail(path, "*", "not found", "(set drift.incoming to a file or a directory)")
    found: list[Path] = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if _wanted(str(p), path):
            found.append(p)
    if not found:
        raise fail(path, "*", "holds no batch files", _KINDS)
    return found


def discover_remote(fs: Any, url: str) -> list[str]:
    """The batch files at `url` in an fsspec filesystem (object storage), by the same rule."""
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    root = fs._strip_protocol(url).rstrip("/")
    if fs.isfile(root):
        _check_named_file(url)
        return [url]
    keys = sorted(fs.find(root))
    if not keys and not fs.isdir(root):
        raise fail(url, "*", "not found", "(no object at this URL or under it)")
    found = []
    for key in keys:
        rel = key[len(root) :].lstrip("/")
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if _wanted(protocol + key, url):
            found.append(protocol + key)
    if not found:
        raise fail(url, "*", "holds no batch files", _KINDS)
    return found


def iter_batches(
    path: File, profile: Profile, batch_rows: int = BATCH_ROWS, fs: Any = None
) -> Iterator[Batch]:
    """Every batch of every file at `path`, checked against the profile's features."""
    for file in discover(path) if fs is None else discover_remote(fs, str(path)):
        yield from read_file(file, profile, batch_rows, fs)


def count_file(
    file: File,
    profile: Profile,
    scorer: Scorer | None = None,
    batch_rows: int = BATCH_ROWS,
    fs: Any = None,
) -> Part:
    """Count one file's rows into the profile's bins. Rows without logged probabilities are
    scored with `scorer` (a model frame in, probability per profiled class out) when given."""
    counts = Tally(profile)
    part = Part()
    for batch in read_file(file, profile, batch_rows, fs):
        part.files = 1
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
        part.versions.update(batch.versions)
        part.first_timestamp = _earlier(part.first_timestamp, batch.first_timestamp)
        part.last_timestamp = _later(part.last_timestamp, batch.last_timestamp)
    part.rows, part.features, part.predictions = counts.rows, counts.features, counts.predictions
    return part


def combine(profile: Profile, parts: Iterable[Part], path: File) -> tuple[Tally, Source]:
    """The sum of the parts: counts, rows and files add; timestamps span; versions add up."""
    counts = Tally(profile)
    total = Part()
    for part in parts:
        counts.add_rows(part.rows)
        for name, c in part.features.items():
            counts.features[name] += c
        for cls, c in part.predictions.items():
            counts.predictions[cls] += c
        total.files += part.files
        total.versions.update(part.versions)
        total.first_timestamp = _earlier(total.first_timestamp, part.first_timestamp)
        total.last_timestamp = _later(total.last_timestamp, part.last_timestamp)
    source = Source(
        path=str(path),
        files=total.files,
        served_versions=dict(sorted(total.versions.items())),
        first_timestamp=total.first_timestamp,
        last_timestamp=total.last_timestamp,
    )
    return counts, source


def tally(
    path: File,
    profile: Profile,
    scorer: Scorer | None = None,
    batch_rows: int = BATCH_ROWS,
    fs: Any = None,
) -> tuple[Tally, Source]:
    """Count every incoming row at `path` into the profile's bins, file by file in this process
    (`fs`: the fsspec filesystem of a URL in object storage)."""
    files: list[File] = list(discover(path)) if fs is None else list(discover_remote(fs, str(path)))
    parts = (count_file(f, profile, scorer, batch_rows, fs) for f in files)
    return combine(profile, parts, path)


def _earlier(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _later(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


def model_frame(batch: Batch, profile: Profile) -> pd.DataFrame:
    import pandas as pd  # only rows without logged probabilities need a frame: not drift check's

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
