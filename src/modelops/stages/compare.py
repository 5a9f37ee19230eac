"""The candidate model + its test split + the champion champions.yaml names for params' gate.against
in; metrics/compare.json (both models' metrics, the paired difference, the verdict and its rule) and
metrics/gate.json (the verdict and interval, as DVC metrics) out."""

from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
import pandas as pd

from modelops import challenge, files, gate, paths
from modelops.card import load_card, verify_artifact
from modelops.params import load
from modelops.registry import champions
from modelops.stages import run


def main() -> None:
    params = load()
    card = load_card(paths.CARD)
    verify_artifact(card, paths.MODEL)
    candidate = challenge.Contender(card, joblib.load(paths.MODEL))
    test = pd.read_parquet(paths.TEST)
    ref = champions.recorded(paths.CHAMPIONS, champions.gate_stage(params))
    with tempfile.TemporaryDirectory(prefix="modelops-champion-") as tmp:
        name = params.base.model_name
        champion = challenge.fetch_champion(ref, name, Path(tmp)) if ref else None
    comparison = challenge.compare(params, candidate, test, ref, champion)

    with files.outputs(paths.COMPARE, paths.GATE) as out:
        files.write_bytes(out.path(paths.COMPARE), gate.encode(comparison))
        files.write_bytes(out.path(paths.GATE), gate.encode(comparison.summary()))
    print("compare: " + "\n".join(comparison.lines()))


if __name__ == "__main__":
    run(main)
