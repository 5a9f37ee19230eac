"""params.base.seed + generate.n_rows in, the bundled synthetic customers (data/raw) out."""

from __future__ import annotations

from modelops import files, paths
from modelops.params import load
from modelops.stages import run
from modelops.synthetic import generate_customers


def main() -> None:
    params = load()
    frame = generate_customers(params.generate.n_rows, params.base.seed)
    files.write_with(paths.RAW, lambda tmp: frame.to_parquet(tmp, index=False))
    print(f"generate: {len(frame)} customers -> {paths.RAW}")


if __name__ == "__main__":
    run(main)
