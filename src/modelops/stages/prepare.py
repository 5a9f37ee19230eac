"""The raw table (params data.path) in; validated, typed train/test parquet and the schema out."""

from __future__ import annotations

from modelops import dataset, files, paths
from modelops.params import load
from modelops.schema import infer_and_validate
from modelops.stages import run


def main() -> None:
    params = load()
    source = params.data.path
    raw = dataset.read_table(source, na_values=params.data.na_values)
    schema, clean = infer_and_validate(raw, params.data, source)
    train, test = dataset.split(clean, schema.target.name, params.data.test_size, params.base.seed)
    with files.outputs(paths.TRAIN, paths.TEST, paths.SCHEMA) as out:
        train.to_parquet(out.path(paths.TRAIN), index=False)
        test.to_parquet(out.path(paths.TEST), index=False)
        files.write_bytes(out.path(paths.SCHEMA), schema.to_yaml(source).encode())
    classes = schema.target.classes
    print(
        f"prepare: {len(clean)} rows -> {len(train)} train / {len(test)} test; "
        f"{len(schema.features)} features ({len(schema.numeric)} numeric, "
        f"{len(schema.categorical)} categorical)\n"
        f"prepare: {len(classes)} classes: {', '.join(map(str, classes[:8]))}"
        + (", …" if len(classes) > 8 else "")
    )


if __name__ == "__main__":
    run(main)
