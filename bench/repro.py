"""Time the training pipeline in a fresh clone: cold `dvc repro`, then no-op `dvc repro`; and the
champion gate's paired bootstrap on the clone's test split, as a share of that cold repro.

Baselines measured in the same run: `dvc --version` (the cost of starting DVC at all), so the
no-op ratio says how much work a no-op repro adds on top of DVC's own start-up; and the cold repro
itself, which the bootstrap must stay under 10% of (a fresh clone has no champion, so the bench
scores the trained model against itself with one feature's values shuffled).

    python bench/repro.py [--rows N] [--noop-runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COLD_BUDGET_S = 60.0
NOOP_BUDGET_S = 1.5
BOOTSTRAP_BUDGET = 0.10  # of the cold repro


def clone(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for rel in filter(None, listed.stdout.split("\0")):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="generate.n_rows (default: params.yaml's)"
    )
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]

    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        repo = Path(tmp)
        clone(repo)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        if args.rows:
            params["generate"]["n_rows"] = args.rows
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rows = params["generate"]["n_rows"]

        startup = statistics.median(
            timed(["dvc", "--version"], repo) for _ in range(args.noop_runs)
        )
        cold = timed(["dvc", "repro"], repo)
        noop = statistics.median(timed(["dvc", "repro"], repo) for _ in range(args.noop_runs))
        resamples, test_rows, bootstrap_s = time_bootstrap(repo)

    print(f"machine: {os.cpu_count()} cores; data: {rows} rows")
    print(f"dvc --version (baseline)    {startup:7.2f} s  (median of {args.noop_runs})")
    print(
        f"cold dvc repro              {cold:7.2f} s  = {cold / COLD_BUDGET_S:.2f}x the 60 s budget"
    )
    print(
        f"no-op dvc repro             {noop:7.2f} s  = {noop / NOOP_BUDGET_S:.2f}x the 1.5 s budget, "
        f"{noop / startup:.2f}x dvc's own start-up"
    )
    print(
        f"gate bootstrap              {bootstrap_s:7.2f} s  = {bootstrap_s / cold:.1%} of the cold "
        f"repro (budget {BOOTSTRAP_BUDGET:.0%}); {resamples} paired resamples of {test_rows} rows"
    )


def time_bootstrap(repo: Path) -> tuple[int, int, float]:
    """Seconds the gate's paired bootstrap takes on the clone's test split, with its params."""
    import joblib
    import numpy as np
    import pandas as pd

    from modelops import bootstrap, paths
    from modelops.card import load_card
    from modelops.params import load

    params = load(repo / "params.yaml")
    card = load_card(repo / paths.CARD)
    schema = card.feature_schema
    test = pd.read_parquet(repo / paths.TEST)
    frame, y = schema.to_model_frame(test), schema.target_array(test)
    pipeline = joblib.load(repo / paths.MODEL)
    shuffled = frame.copy()
    first = schema.names[0]
    shuffled[first] = np.random.default_rng(params.base.seed).permutation(frame[first].to_numpy())
    candidate, champion = pipeline.predict_proba(frame), pipeline.predict_proba(shuffled)
    gate = params.gate
    start = time.perf_counter()
    bootstrap.paired_difference(
        gate.metric,
        y,
        candidate,
        champion,
        card.classes,
        schema.target.positive,
        params.evaluate.threshold,
        resamples=gate.bootstrap,
        confidence=gate.confidence,
        seed=params.base.seed,
    )
    return gate.bootstrap, len(y), time.perf_counter() - start


if __name__ == "__main__":
    main()
