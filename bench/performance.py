"""The performance stage's join on 1M logged predictions + their outcomes; prints rows/s per step
and the join against a naive pandas baseline in the same run.

    python bench/performance.py                  # 1M predictions (about 0.5 GB of log in $TMPDIR)
    python bench/performance.py --rows 200000

The log is written as a server writes it: `LogLine`s with ten inputs, in segments of 100k lines,
from two model versions; a tenth of the customers are scored twice. Outcomes arrive for 80% of
the ids, a day to five weeks later, in one CSV. "ours" is `modelops.performance.join.join`
(ids factorised, one `merge_asof` per version); "naive" merges every outcome with every
prediction of its id, keeps those made before it and picks the latest with a groupby, the way a
notebook does it. Both must label the same predictions, or the bench fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from modelops.logline import PREDICTION_PREFIX, LoggedModel, LogLine, segment_name, utc_timestamp
from modelops.params import PerformanceParams
from modelops.performance import join, log, outcomes, report
from modelops.performance.baseline import Baseline
from modelops.performance.judge import Model, Rule

SEGMENT_ROWS = 100_000
START = 1_736_121_600.0  # 2025-01-06T00:00:00Z
DAYS = 56
CLASSES = ["0", "1"]


def write_log(directory: Path, rows: int, seed: int) -> pd.DataFrame:
    """Segments of `rows` lines; the (version, id, time, p1) of each, for the outcomes."""
    rng = np.random.default_rng(seed)
    customers = int(rows * 0.9)
    ids = np.concatenate([np.arange(customers), rng.integers(0, customers, rows - customers)])
    rng.shuffle(ids)
    times = np.sort(START + rng.uniform(0, DAYS * 86_400, rows))
    p1 = rng.beta(2, 5, rows).tolist()
    versions = np.where(rng.random(rows) < 0.5, "v1.0.0", "v1.1.0")
    encoder = msgspec.json.Encoder()
    directory.mkdir()
    for s, at in enumerate(range(0, rows, SEGMENT_ROWS)):
        lines = [
            LogLine(
                timestamp=utc_timestamp(float(times[i])),
                request_id=f"r{i}",
                model=LoggedModel("churn", str(versions[i])),
                inputs={
                    "tenure_months": 12.0,
                    "monthly_charges": 70.5,
                    "total_charges": 846.0,
                    "age": None,
                    "support_calls": 1.0,
                    "data_usage_gb": 14.2,
                    "contract": "one_year",
                    "payment_method": "bank_transfer",
                    "plan": "standard",
                    "region": "region_c",
                },
                output={"label": int(p1[i] >= 0.5), "probabilities": {"0": 1 - p1[i], "1": p1[i]}},
                id=f"C{ids[i]:08d}",
            )
            for i in range(at, min(at + SEGMENT_ROWS, rows))
        ]
        name = segment_name(PREDICTION_PREFIX, START + s * 3600, 1, s + 1)
        (directory / name).write_bytes(encoder.encode_lines(lines))
    return pd.DataFrame({"id": ids, "time": times})


def write_outcomes(path: Path, predicted: pd.DataFrame, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    last = predicted.groupby("id")["time"].max()
    keep = last[rng.random(len(last)) < 0.8]
    observed = keep.to_numpy() + rng.uniform(1, 35, len(keep)) * 86_400
    labels = (rng.random(len(keep)) < 0.3).astype(int)
    stamps = pd.to_datetime(observed, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    pd.DataFrame(
        {"id": [f"C{i:08d}" for i in keep.index], "label": labels, "observed_at": stamps}
    ).to_csv(path, index=False)


def naive_join(p: log.Predictions, o: outcomes.Outcomes) -> np.ndarray:
    """The label of each prediction, the notebook way: merge, filter, groupby idxmax."""
    preds = pd.DataFrame({"row": np.arange(p.rows), "id": p.ids, "v": p.version, "t": p.time})
    outs = pd.DataFrame({"id": o.ids, "label": o.labels, "at": o.observed})
    both = preds.dropna(subset=["id"]).merge(outs, on="id")
    both = both[both["t"] <= both["at"]]
    latest = both.loc[both.groupby(["id", "v"])["t"].idxmax()]
    label = np.full(p.rows, -1, dtype=np.int64)
    label[latest["row"].to_numpy()] = latest["label"].map({c: i for i, c in enumerate(CLASSES)})
    return label


def timed(what: str, rows: int, fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"  {what:<44} {seconds:7.2f} s  {rows / seconds:>12,.0f} rows/s")
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelops-bench-performance-"))
    try:
        predicted = write_log(tmp / "log", args.rows, args.seed)
        write_outcomes(tmp / "outcomes.csv", predicted, args.seed)
        size = sum(f.stat().st_size for f in (tmp / "log").iterdir()) / 1e6
        n_out = len(pd.read_csv(tmp / "outcomes.csv", usecols=["id"]))
        print(f"{args.rows:,} predictions ({size:.0f} MB of log), {n_out:,} outcomes:")
        p, t_log = timed(
            "read the log (log.read)", args.rows, lambda: log.read(tmp / "log", "churn", CLASSES)
        )
        o, t_out = timed(
            "read the outcomes (outcomes.read)",
            n_out,
            lambda: outcomes.read([tmp / "outcomes.csv"]),
        )
        width = join.window_ns("7d")
        j, t_join = timed(
            "join by id (join.join)", args.rows, lambda: join.join(p, o, CLASSES, width)
        )
        naive, t_naive = timed(
            "join, naive (merge + filter + groupby)", args.rows, lambda: naive_join(p, o)
        )
        if not np.array_equal(naive, j.label):
            sys.exit("the two joins label different predictions")
        model = Model([0, 1], 1, 0.5)
        tests = {v: Baseline("bench", {"roc_auc": 0.5}) for v in p.versions}
        _, t_judge = timed(
            "metrics + bootstrap per version and week",
            args.rows,
            lambda: report.build(
                "churn",
                p,
                o,
                j,
                dict.fromkeys(p.versions, model),
                tests,
                Rule.from_params(PerformanceParams()),
                "7d",
                width,
                1,
            ),
        )
        total = t_log + t_out + t_join + t_judge
        print(f"  {'all of it':<44} {total:7.2f} s  {args.rows / total:>12,.0f} rows/s")
        print(
            f"\nratio: the join is {t_naive / t_join:.1f}x faster than the naive one (same labels)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
