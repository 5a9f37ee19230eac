"""The verified model + params.base.seed in; a demo prediction log with instance ids
(data/demo/predictions/) and the outcomes known for it (data/demo/outcomes.csv) out, so that
`performance` has something to judge on a fresh clone (see modelops.performance.demo)."""

from __future__ import annotations

import joblib

from modelops import files, paths
from modelops.card import load_card, verify_artifact
from modelops.evaluation import Decision
from modelops.params import load
from modelops.performance import demo
from modelops.stages import run


def main() -> None:
    params = load()
    card = load_card(paths.CARD)
    verify_artifact(card, paths.MODEL)
    pipeline = joblib.load(paths.MODEL)
    schema = card.feature_schema
    frame = demo.customers(params.base.seed)
    proba = pipeline.predict_proba(schema.to_model_frame(frame))
    decision = Decision.of(schema.target, files.read_json(paths.METRICS))
    segments = demo.log_segments(
        frame, schema, proba, card.classes, decision.labels(proba, card.classes), card.name
    )
    known = demo.outcomes(frame, params.base.seed)
    # A directory of its own, never data/incoming: a DVC output there would delete a real log.
    with files.outputs(paths.DEMO_PREDICTIONS, paths.DEMO_OUTCOMES) as out:
        log = out.dir(paths.DEMO_PREDICTIONS)
        for name, data in segments.items():
            (log / name).write_bytes(data)
        known.to_csv(out.path(paths.DEMO_OUTCOMES), index=False)
    print(
        f"simulate: {len(frame)} predictions in {len(segments)} segments -> {paths.DEMO_PREDICTIONS}/"
    )
    print(f"          {len(known)} outcomes known -> {paths.DEMO_OUTCOMES}")


if __name__ == "__main__":
    run(main)
