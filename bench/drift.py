"""Streaming drift counts vs a naive pandas baseline on 1M and 10M rows x 13 features, and the
Dask path vs the single-process path on the same files; prints ratios.

    python bench/drift.py                      # 1M and 10M rows (about 0.7 GB in $TMPDIR at once)
    python bench/drift.py --rows 200000 2000000
    python bench/drift.py --skip-files         # only the live-window part
    python bench/drift.py --dask-only --rows 10000000 --workers 2

Each (size, method) runs in its own child process, so peak resident memory is that method's alone.
"ours" is `modelops.drift.incoming.tally` (pyarrow batches, dictionary-encoded categories, numpy
bins);
"naive" is `pd.read_parquet` + `pd.cut` + `value_counts`, the way drift is usually computed in a
notebook. Both must produce identical counts, or the bench fails. Last, the server's LiveWindow
(`modelops.serve.livedrift`): its cost per answered row against counting the whole window again
on every request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelops.drift import incoming
from modelops.drift.bins import encode
from modelops.drift.profile import (
    PROFILE_SCHEMA_VERSION,
    FeatureProfile,
    NumericProfile,
    Profile,
    categorical_profile,
    numeric_profile,
)
from modelops.drift.report import DriftReport, Tally
from modelops.drift.status import Thresholds
from modelops.serve.livedrift import LiveWindow

NUMERIC = [f"num_{i}" for i in range(8)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
CHUNK_ROWS = 500_000  # written per row group; the bench never holds more than this in memory
BYTES_PER_ROW = 80  # upper bound of the parquet file size per row, for the disk-space check


def _chunk(rng: np.random.Generator, n: int) -> pd.DataFrame:
    cols: dict[str, object] = {}
    for i, name in enumerate(NUMERIC):
        values = rng.gamma(2.0 + i, 10.0, n) if i % 2 else rng.normal(50.0 * i, 10.0 + i, n)
        if i == 3:
            values = rng.poisson(2.0, n).astype(np.float64)  # discrete: deduplicated edges
        values[rng.random(n) < 0.02 * (i % 3)] = np.nan
        cols[name] = values
    for i, name in enumerate(CATEGORICAL):
        levels = np.array([f"{name}_{k}" for k in range(4 + 3 * i)] + [None], dtype=object)
        weights = np.linspace(2.0, 1.0, len(levels))
        weights[-1] = 0.3 * (i % 2)  # missing in some columns only
        cols[name] = levels[rng.choice(len(levels), n, p=weights / weights.sum())]
    return pd.DataFrame(cols)


def make_profile(seed: int) -> Profile:
    """A reference profile from 200k rows of the same process (unseen: the last level of each)."""
    frame = _chunk(np.random.default_rng(seed), 200_000)
    features: dict[str, FeatureProfile] = {}
    for name in NUMERIC:
        features[name] = numeric_profile(frame[name].to_numpy(np.float64), 10)
    for name in CATEGORICAL:
        known = sorted(frame[name].dropna().unique().tolist())[:-1]
        features[name] = categorical_profile(frame[name].to_numpy(object), known)
    return Profile(PROFILE_SCHEMA_VERSION, "bench", 10, len(frame), features)


def write_parquet(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            table = pa.Table.from_pandas(
                _chunk(rng, min(CHUNK_ROWS, rows - start)), preserve_index=False
            )
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=CHUNK_ROWS)
    finally:
        if writer is not None:
            writer.close()
    # Flushed before any timing: otherwise whichever method runs first competes with writeback.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def count_ours(path: Path, profile: Profile) -> dict[str, list[int]]:
    counts, _ = incoming.tally(path, profile)
    return {name: c.tolist() for name, c in counts.features.items()}


def count_naive(path: Path, profile: Profile) -> dict[str, list[int]]:
    frame = pd.read_parquet(path, columns=list(profile.features))
    out: dict[str, list[int]] = {}
    for name, p in profile.features.items():
        col = frame[name]
        if isinstance(p, NumericProfile):
            bins = pd.cut(col, [-np.inf, *p.edges, np.inf], right=True)
            out[name] = [*bins.value_counts(sort=False).tolist(), int(col.isna().sum())]
        else:
            seen = col.value_counts(dropna=False)
            known = [int(seen.get(c, 0)) for c in p.categories]
            missing = int(col.isna().sum())
            out[name] = [*known, len(col) - sum(known) - missing, missing]
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries the parent's
    high-water mark across fork+exec into it, so every child would report at least the bench's
    own size. VmHWM belongs to this address space alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (the bench measures memory on Linux)")


def child(method: str, path: Path, profile_path: Path) -> None:
    profile = Profile.decode(profile_path.read_bytes())
    start = time.perf_counter()
    counts = (count_ours if method == "ours" else count_naive)(path, profile)
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    rows = sum(counts[NUMERIC[0]])
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": rows, "counts": counts}))


def measure(path: Path, profile_path: Path, repeat: int) -> dict[str, dict[str, Any]]:
    """Best time and highest peak per method; the methods alternate, so both meet the same load."""
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": []}
    for _ in range(repeat):
        for method, results in runs.items():
            out = subprocess.run(
                [sys.executable, __file__, "--child", method, str(path), str(profile_path)],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(out.stdout))
    best: dict[str, dict[str, Any]] = {}
    for method, results in runs.items():
        best[method] = min(results, key=lambda r: r["seconds"])  # the least disturbed run
        best[method]["peak_mb"] = max(r["peak_mb"] for r in results)
    return best


def write_parquet_dir(directory: Path, rows: int, seed: int) -> None:
    """The same rows as `write_parquet`, one file per CHUNK_ROWS: a file is Dask's unit of work."""
    directory.mkdir()
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
        chunk = _chunk(rng, min(CHUNK_ROWS, rows - start))
        path = directory / f"part-{i:05d}.parquet"
        chunk.to_parquet(path, index=False, row_group_size=CHUNK_ROWS)
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def dask_vs_single(directory: Path, profile: Profile, workers: int, repeat: int) -> None:
    """Single-process counting vs `modelops.drift.distributed` on a LocalCluster of worker
    processes, the same files, alternating; counts must be identical."""
    from dask.distributed import LocalCluster

    from modelops.drift import distributed

    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in directory.iterdir())
    files = len(list(directory.iterdir()))
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    startup = time.perf_counter() - start
    times: dict[str, list[float]] = {"single": [], "dask": []}
    counts: dict[str, Any] = {}
    try:
        for _ in range(repeat):
            for method in times:
                start = time.perf_counter()
                if method == "single":
                    tally, _ = incoming.tally(directory, profile)
                else:
                    tally, _ = distributed.tally(str(directory), profile, cluster.scheduler_address)
                times[method].append(time.perf_counter() - start)
                counts[method] = {n: c.tolist() for n, c in tally.features.items()}
    finally:
        cluster.close()
    if counts["single"] != counts["dask"]:
        sys.exit(f"counts differ between the single-process and the Dask path at {rows} rows")
    single, spread = min(times["single"]), min(times["dask"])
    print(f"\nDask vs single process, {rows:,} rows in {files} parquet files (counts identical):")
    print(f"  single process:              {single:6.2f} s  {rows / single:>12,.0f} rows/s")
    print(f"  dask, {workers} worker processes:  {spread:6.2f} s  {rows / spread:>12,.0f} rows/s")
    print(
        f"  ratio: dask takes {spread / single:.2f}x the single-process time (cluster start-up, "
        f"{startup:.1f} s, not included; {os.cpu_count()} cores here)"
    )


def recount(profile: Profile, frame: pd.DataFrame) -> DriftReport:
    """The drift report of `frame` counted from scratch, with the same bins as the window."""
    counts = Tally(profile)
    counts.add_rows(len(frame))
    for name, p in profile.features.items():
        if isinstance(p, NumericProfile):
            counts.add_numeric(name, frame[name].to_numpy(np.float64))
        else:
            counts.add_codes(name, *encode(frame[name].tolist()))
    return counts.report(Thresholds())


def live_window(profile: Profile, seed: int, window: int = 5000) -> None:
    """Per-request cost of the server's LiveWindow vs re-checking the whole window each time."""
    frame = _chunk(np.random.default_rng(seed), 3 * window)
    sub = frame.astype(object)
    live = LiveWindow(profile, window=window, min_rows=300)
    # The server queues answered rows and moves them into the window in batches (one dispatcher
    # tick apart); here batches of 1000 rows, given column-wise as the server gives them.
    batches = [
        {
            name: sub[name]
            .iloc[i : i + 1000]
            .where(sub[name].iloc[i : i + 1000].notna(), None)
            .tolist()
            for name in profile.features
        }
        for i in range(0, len(sub), 1000)
    ]
    for columns in batches[: window // 1000]:
        live.observe_columns(columns)
    batches = batches[window // 1000 :]
    later = sub.iloc[window:]
    start = time.perf_counter()
    for columns in batches:
        live.observe_columns(columns)
    observe_us = (time.perf_counter() - start) / len(later) * 1e6
    start = time.perf_counter()
    for _ in range(100):
        live.snapshot()
    snapshot_us = (time.perf_counter() - start) / 100 * 1e6
    # Without a ring buffer: keep the last `window` rows and count them again on each request.
    recent = frame.iloc[: window - 1]
    start = time.perf_counter()
    n = 50
    for i in range(n):
        recent = pd.concat([recent.iloc[1:], frame.iloc[[window + i]]])
        recount(profile, recent)
    recount_us = (time.perf_counter() - start) / n * 1e6
    print(f"\nlive window of {window} rows, {len(profile.features)} features:")
    print(
        f"  observe (batches of 1000 rows): {observe_us:,.2f} us/row; "
        f"snapshot (per scrape): {snapshot_us:,.0f} us"
    )
    print(f"  recount of the window per answered row (baseline): {recount_us:,.0f} us/row")
    print(f"  ratio: observe is {recount_us / observe_us:,.0f}x cheaper than recounting")


def cli_vs_kernel(path: Path, profile_path: Path, kernel: float, repeat: int) -> None:
    """`modelops drift check --incoming` as a user runs it (a new process: imports, reading,
    counting, the report) against the counting alone (`tally` in a warm process, best run), and
    the floor of any new process that counts: Python's start and the readers' imports."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "modelops.cli", "drift", "check", "--incoming", str(path),
             "--profile", str(profile_path)],
            check=True, capture_output=True, cwd=path.parent,
        )  # fmt: skip
        best = min(best, time.perf_counter() - started)
    imports = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); "
         "import modelops.cli, modelops.drift.incoming, modelops.drift.report; "
         "print(time.perf_counter() - t)"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    # The floor of any such command: a new process that only starts Python and imports what
    # reading the file needs, then counts.
    bare = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, pyarrow.parquet"], check=True)
        bare = min(bare, time.perf_counter() - started)
    print(
        f"{'':>11} drift check --incoming, a new process: {best:.2f} s = {best / kernel:.1f}x the "
        f"counting\n{'':>11} alone ({kernel:.2f} s); its imports: {float(imports):.2f} s. Floor: a "
        f"new process importing only\n{'':>11} numpy and pyarrow.parquet takes {bare:.2f} s, so no "
        f"command reading the file with them is\n{'':>11} under {(bare + kernel) / kernel:.1f}x "
        "the counting"
    )


def files_vs_naive(
    tmp: Path, profile_path: Path, row_counts: list[int], seed: int, repeat: int
) -> None:
    """Our reader against the naive one on the same parquet files, the CLI against its kernel."""
    results: dict[tuple[int, str], dict[str, Any]] = {}
    print(f"{'rows':>11} {'method':>6} {'file MB':>8} {'seconds':>8} {'rows/s':>12} {'peak MB':>8}")
    for rows in row_counts:
        path = tmp / f"incoming-{rows}.parquet"
        write_parquet(path, rows, seed + rows)
        size_mb = path.stat().st_size / 1e6
        measured = measure(path, profile_path, repeat)
        cli_vs_kernel(path, profile_path, measured["ours"]["seconds"], repeat)
        for method in ("ours", "naive"):
            r = results[rows, method] = measured[method]
            assert r["rows"] == rows, (method, r["rows"], rows)
            print(
                f"{rows:>11,} {method:>6} {size_mb:>8.0f} {r['seconds']:>8.2f} "
                f"{rows / r['seconds']:>12,.0f} {r['peak_mb']:>8.0f}"
            )
        if results[rows, "ours"]["counts"] != results[rows, "naive"]["counts"]:
            sys.exit(f"counts differ between methods at {rows} rows")
        path.unlink()

    print("\nratios (same run, same files; counts identical):")
    for rows in row_counts:
        ours, naive = results[rows, "ours"], results[rows, "naive"]
        print(
            f"  {rows:>11,} rows: ours is {naive['seconds'] / ours['seconds']:.1f}x faster, "
            f"uses {naive['peak_mb'] / ours['peak_mb']:.1f}x less peak memory"
        )
    lo, hi = min(row_counts), max(row_counts)
    if lo != hi:
        for method in ("ours", "naive"):
            growth = results[hi, method]["peak_mb"] / results[lo, method]["peak_mb"]
            print(f"  peak memory {hi // lo}x more rows: {method} x{growth:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best time)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "PARQUET", "PROFILE"))
    parser.add_argument("--skip-files", action="store_true", help="only the live-window part")
    parser.add_argument("--dask-only", action="store_true", help="only the Dask comparison")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    if args.skip_files:
        live_window(make_profile(args.seed), args.seed)
        return
    tmp = Path(tempfile.mkdtemp(prefix="modelops-bench-drift-"))
    try:
        need = max(args.rows) * BYTES_PER_ROW
        free = shutil.disk_usage(tmp).free
        print(
            f"temp dir {tmp}: {free / 1e9:.1f} GB free, largest file needs up to {need / 1e9:.1f} GB"
        )
        if free < 2 * need:
            sys.exit("not enough free disk space for the bench files")
        profile_path = tmp / "profile.json"
        profile_path.write_bytes(json.dumps(make_profile(args.seed).to_dict()).encode())

        if args.dask_only:
            for rows in args.rows:
                parts = tmp / f"parts-{rows}"
                write_parquet_dir(parts, rows, args.seed + rows)
                dask_vs_single(parts, make_profile(args.seed), args.workers, args.repeat)
                shutil.rmtree(parts)
            return
        files_vs_naive(tmp, profile_path, args.rows, args.seed, args.repeat)
        hi = max(args.rows)
        parts = tmp / "parts"
        write_parquet_dir(parts, hi, args.seed + hi)
        dask_vs_single(parts, make_profile(args.seed), args.workers, args.repeat)
        shutil.rmtree(parts)
        live_window(make_profile(args.seed), args.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
