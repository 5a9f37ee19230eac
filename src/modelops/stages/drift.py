"""The frozen profile + the model + incoming rows (params drift.incoming) in; the drift report
(metrics/drift.json), its summary metric, per-feature reference-vs-current distributions
(metrics/drift_plots/) and the report as one HTML page (metrics/drift_report.html) out.

Rows that carry logged probabilities (prediction-log segments) are judged on those; other rows
(parquet, CSV) are scored with the verified model, so prediction drift is always reported.
"""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd

from modelops import files, paths
from modelops.card import load_card, verify_artifact
from modelops.drift import html, incoming
from modelops.drift.profile import Profile
from modelops.drift.status import Thresholds
from modelops.errors import SchemaError
from modelops.params import load
from modelops.stages import run


def main() -> None:
    params = load()
    profile = Profile.decode(paths.PROFILE.read_bytes(), str(paths.PROFILE))
    card = load_card(paths.CARD)
    if profile.model_sha256 not in (None, card.artifact.sha256):
        raise SchemaError(
            f"{paths.PROFILE} belongs to model sha256 {profile.model_sha256[:12]}, but "
            f"{paths.CARD} describes {card.artifact.sha256[:12]}; re-run `dvc repro profile`"
        )
    if list(profile.features) != card.feature_schema.names:
        raise SchemaError(f"{paths.PROFILE} profiles other features than {paths.CARD} declares")
    verify_artifact(card, paths.MODEL)
    pipeline = joblib.load(paths.MODEL)
    columns = {str(c): card.classes.index(c) for c in card.feature_schema.target.scored}

    def score(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        proba = pipeline.predict_proba(frame)
        return {cls: proba[:, i] for cls, i in columns.items()}

    counts, source = incoming.tally(params.drift.incoming, profile, scorer=score)
    report = counts.report(Thresholds.from_params(params.drift)).with_source(source)
    distributions = counts.distributions()

    with files.outputs(
        paths.DRIFT, paths.DRIFT_SUMMARY, paths.DRIFT_PLOTS, paths.DRIFT_HTML
    ) as out:
        files.write_json(out.path(paths.DRIFT), report.to_dict())
        files.write_json(out.path(paths.DRIFT_SUMMARY), report.summary().to_dict())
        plots = out.dir(paths.DRIFT_PLOTS)
        for name, rows in distributions.items():
            files.write_json(plots / f"{files.safe_name(name)}.json", rows)
        files.write_bytes(out.path(paths.DRIFT_HTML), html.render(report, distributions).encode())
    print(report.summary().verdict())
    print(f"drift: the rows: {source.path}")
    print(f"drift: the table: `modelops drift check`; the charts: {paths.DRIFT_HTML}")


if __name__ == "__main__":
    run(main)
