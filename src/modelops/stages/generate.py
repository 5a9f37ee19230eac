"""params.base.seed + generate in; the bundled synthetic customers (data/raw) and one demo batch per
drift scenario (data/scenarios/<scenario>.parquet, see modelops.synthetic for what each moves) out."""

from __future__ import annotations

from modelops import files, paths
from modelops.params import load
from modelops.stages import run
from modelops.synthetic import SCENARIOS, generate_customers


def main() -> None:
    params = load()
    frame = generate_customers(params.generate.n_rows, params.base.seed)
    # A directory output of its own, never data/incoming: the server's log lives there, and a
    # DVC output would make `dvc repro` delete it.
    scenarios = [s for s in SCENARIOS if s != "baseline"]
    rows = params.generate.scenario_rows
    with files.outputs(paths.RAW, paths.SCENARIOS) as out:
        frame.to_parquet(out.path(paths.RAW), index=False)
        batches = out.dir(paths.SCENARIOS)
        for name in scenarios:
            batch = generate_customers(rows, params.base.seed, name)
            batch.to_parquet(batches / paths.scenario_path(name).name, index=False)
    print(f"generate: {len(frame)} customers -> {paths.RAW}")
    print(f"generate: {len(scenarios)} drift scenarios x {rows} rows -> {paths.SCENARIOS}/")


if __name__ == "__main__":
    run(main)
