"""The fitted Pipeline + test split in; metrics.json, curve and confusion plots, importance out."""

from __future__ import annotations

import joblib
import pandas as pd

from modelops import evaluation, files, paths
from modelops.card import load_card, verify_artifact
from modelops.params import load
from modelops.stages import run


def main() -> None:
    params = load()
    card = load_card(paths.CARD)
    verify_artifact(card, paths.MODEL)
    pipeline = joblib.load(paths.MODEL)
    schema = card.feature_schema
    test = pd.read_parquet(paths.TEST)
    frame, y = schema.to_model_frame(test), schema.target_array(test)
    proba = pipeline.predict_proba(frame)
    classes, positive = card.classes, schema.target.positive

    metrics = evaluation.classification_metrics(
        y, proba, classes, positive, params.evaluate.threshold
    )
    curves = evaluation.curves(y, proba, classes, positive, params.evaluate.calibration_bins)
    pred = evaluation.predict_labels(proba, classes, positive, params.evaluate.threshold)
    importance = evaluation.feature_importance(
        pipeline,
        frame,
        y,
        binary=schema.target.is_binary,
        repeats=params.evaluate.importance_repeats,
        max_rows=params.evaluate.importance_max_rows,
        seed=params.base.seed,
    )

    curve_dirs = {
        "roc": paths.ROC_PLOTS,
        "precision_recall": paths.PR_PLOTS,
        "calibration": paths.CALIBRATION_PLOTS,
    }
    with files.outputs(paths.METRICS, paths.PLOTS) as out:
        files.write_json(out.path(paths.METRICS), metrics)
        plots = out.dir(paths.PLOTS)
        for kind, series in curves.items():
            for cls, rows in series.items():
                name = files.safe_name(cls)
                files.write_json(
                    plots / curve_dirs[kind].relative_to(paths.PLOTS) / f"{name}.json", rows
                )
        files.write_json(plots / paths.CONFUSION_PLOT.name, evaluation.confusion_rows(y, pred))
        files.write_json(plots / paths.IMPORTANCE_PLOT.name, importance)
    shown = {k: v for k, v in metrics.items() if k.startswith(("roc_auc", "log_loss", "accuracy"))}
    print(f"evaluate: {shown}")


if __name__ == "__main__":
    run(main)
