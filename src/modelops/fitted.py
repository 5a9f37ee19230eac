"""A fitted Pipeline + params + data files in, the model card out; and the proof that a loaded
Pipeline still gives the card's reference predictions.

Everything here needs scikit-learn, numpy or pandas; the card's types and reading live in `card`.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import joblib
import msgspec
import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline

from modelops import files
from modelops.card import REFERENCE_TOLERANCE, Artifact, Card, DataFingerprint, ReferenceSample
from modelops.errors import ArtifactIntegrityError
from modelops.params import Params
from modelops.schema import FeatureSchema, NumericFeature, frame_from_records


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
    }


def reference_sample(
    pipeline: Pipeline, schema: FeatureSchema, frame: pd.DataFrame, n_rows: int, seed: int
) -> ReferenceSample:
    """Pick `n_rows` training rows, half of them with a missing value where any exist."""
    rng = np.random.default_rng(seed)
    has_missing = frame[schema.names].isna().any(axis=1).to_numpy()
    with_gaps = np.flatnonzero(has_missing)
    n_gaps = min(len(with_gaps), n_rows // 2)
    picked = rng.choice(with_gaps, n_gaps, replace=False) if n_gaps else np.empty(0, dtype=int)
    rest = np.setdiff1d(np.arange(len(frame)), picked)
    picked = np.sort(
        np.concatenate([picked, rng.choice(rest, min(len(rest), n_rows - n_gaps), replace=False)])
    )
    sample = frame.iloc[picked]
    proba = pipeline.predict_proba(schema.to_model_frame(sample))
    return ReferenceSample(rows=records(schema, sample), probabilities=proba.tolist())


def records(schema: FeatureSchema, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature rows as JSON-ready records: floats (ints for integer features), strings, None for missing."""
    out: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for f in schema.features:
        col = frame[f.name].tolist()
        for rec, v in zip(out, col, strict=True):
            if v is None or v is pd.NA or (isinstance(v, float) and v != v):
                rec[f.name] = None
            elif isinstance(f, NumericFeature):
                rec[f.name] = int(v) if f.dtype == "integer" else float(v)
            else:
                rec[f.name] = str(v)
    return out


def build_card(
    params: Params,
    schema: FeatureSchema,
    pipeline: Pipeline,
    model_path: Path,
    data: dict[str, DataFingerprint],
    reference: ReferenceSample,
) -> Card:
    return Card(
        name=params.base.model_name,
        estimator=params.train.estimator,
        hyperparameters=params.train.hyperparameters(),
        preprocess=msgspec.to_builtins(params.preprocess),
        seed=params.base.seed,
        feature_schema=schema,
        classes=[c.item() if isinstance(c, np.generic) else c for c in pipeline.classes_],
        data=data,
        artifact=Artifact(
            path=model_path.name,
            sha256=files.sha256(model_path),
            md5=files.md5(model_path),
            bytes=model_path.stat().st_size,
        ),
        libraries=library_versions(),
        reference=reference,
    )


def check_reference(pipeline: Pipeline, card: Card) -> float:
    """Largest absolute difference between the loaded pipeline's probabilities on the card's reference
    rows and the recorded ones; raises if it exceeds REFERENCE_TOLERANCE."""
    frame = frame_from_records(card.feature_schema, card.reference.rows)
    got = pipeline.predict_proba(frame)
    want = np.asarray(card.reference.probabilities, dtype=np.float64)
    if got.shape != want.shape:
        raise ArtifactIntegrityError(
            f"reference predictions have shape {got.shape}, the card recorded {want.shape}"
        )
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    if diff > REFERENCE_TOLERANCE:
        raise ArtifactIntegrityError(
            f"loaded model differs from the trained one on the card's reference rows "
            f"(max |Δp| = {diff:.3g} > {REFERENCE_TOLERANCE:g}); library versions may differ: "
            f"card {card.libraries}, here {library_versions()}"
        )
    return diff
