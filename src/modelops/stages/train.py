"""Prepared train split + schema + params in, the fitted Pipeline (model.joblib) and its card out."""

from __future__ import annotations

from pathlib import Path

import joblib
import pandas as pd
import pyarrow.parquet as pq

from modelops import files, paths
from modelops.card import DataFingerprint, to_json
from modelops.fitted import build_card, reference_sample
from modelops.params import load
from modelops.pipeline import build_pipeline, fit
from modelops.schema import FeatureSchema
from modelops.stages import run


def _fingerprint(path: Path | str, rows: int | None = None) -> DataFingerprint:
    return DataFingerprint(path=str(path), md5=files.md5(path), rows=rows)


def main() -> None:
    params = load()
    schema = FeatureSchema.from_yaml(paths.SCHEMA)
    train = pd.read_parquet(paths.TRAIN)
    pipeline = build_pipeline(params, schema)
    fit(pipeline, schema.to_model_frame(train), schema.target_array(train))
    reference = reference_sample(
        pipeline, schema, train, params.train.reference_rows, params.base.seed
    )
    test_rows = pq.read_metadata(paths.TEST).num_rows
    data = {
        # prepare refuses a table with bad rows rather than dropping them: the splits are all of it
        "raw": _fingerprint(params.data.path, len(train) + test_rows),
        "train": _fingerprint(paths.TRAIN, len(train)),
        "test": _fingerprint(paths.TEST, test_rows),
    }
    # The card first: a model is never in place without the card that vouches for it.
    with files.outputs(paths.CARD, paths.MODEL) as out:
        joblib.dump(pipeline, out.path(paths.MODEL))
        card = build_card(params, schema, pipeline, out.path(paths.MODEL), data, reference)
        files.write_json(out.path(paths.CARD), to_json(card))
    print(
        f"train: {card.estimator} on {len(train)} rows -> {paths.MODEL} (sha256 {card.artifact.sha256[:12]})"
    )


if __name__ == "__main__":
    run(main)
