"""Train split + fitted Pipeline + test split in; the frozen reference profile (models/profile.json) out."""

from __future__ import annotations

import joblib
import msgspec
import pandas as pd

from modelops import files, paths
from modelops.card import load_card, verify_artifact
from modelops.drift.profile import build_profile
from modelops.drift.status import LiveSettings, Thresholds
from modelops.params import load
from modelops.stages import run


def main() -> None:
    params = load()
    card = load_card(paths.CARD)
    verify_artifact(card, paths.MODEL)
    schema = card.feature_schema
    train, test = pd.read_parquet(paths.TRAIN), pd.read_parquet(paths.TEST)
    proba = joblib.load(paths.MODEL).predict_proba(schema.to_model_frame(test))
    profile = build_profile(
        schema, train, params.drift.n_bins, card.name, proba, model_sha256=card.artifact.sha256
    )
    # The server judges its live window by the same rule the drift stage uses.
    live = LiveSettings(params.drift.window, Thresholds.from_params(params.drift))
    with files.outputs(paths.PROFILE) as out:
        files.write_json(
            out.path(paths.PROFILE), msgspec.structs.replace(profile, live=live).to_dict()
        )
    print(f"profile: {len(profile.features)} features over {len(train)} rows -> {paths.PROFILE}")


if __name__ == "__main__":
    run(main)
