"""Fitted pipeline + params + data files in, the model card out: the lineage of one trained model.

The card travels with model.joblib. Before anything unpickles the model, `verify_artifact` checks
the file's sha256 against the card; after loading, `check_reference` proves the loaded object gives
the predictions the fitted pipeline gave at training time.
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
from modelops.errors import ArtifactIntegrityError, SchemaError
from modelops.params import Params
from modelops.schema import FeatureSchema, NumericFeature, frame_from_records

CARD_VERSION = 1
REFERENCE_TOLERANCE = 1e-9


class DataFingerprint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    md5: str
    rows: int | None = None


class Artifact(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    sha256: str
    md5: str
    bytes: int


class ReferenceSample(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Training rows as JSON records (null for missing) and the probabilities the pipeline gave them."""

    rows: list[dict[str, Any]]
    probabilities: list[list[float]]


class Provenance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a trained model is and where it came from; the card and GET /v1/model both carry it."""

    name: str
    estimator: str
    hyperparameters: dict[str, Any]
    preprocess: dict[str, Any]
    seed: int
    feature_schema: FeatureSchema
    classes: list[str | int]
    data: dict[str, DataFingerprint]
    artifact: Artifact
    libraries: dict[str, str]

    def provenance(self) -> dict[str, Any]:
        """The provenance fields alone, to build another Provenance from this one."""
        return {field: getattr(self, field) for field in Provenance.__struct_fields__}


class Card(Provenance, frozen=True, forbid_unknown_fields=True):
    reference: ReferenceSample
    card_version: int = CARD_VERSION


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


def to_json(card: Card) -> dict[str, Any]:
    return msgspec.to_builtins(card)


def load_card(path: Path | str) -> Card:
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Card)
    except FileNotFoundError:
        raise SchemaError(f"{path}: model card not found") from None
    except msgspec.DecodeError as exc:
        raise SchemaError(f"{path}: not a valid model card: {exc}") from None


def verify_artifact(card: Card, model_path: Path | str) -> None:
    """Refuse a model file whose bytes are not the ones the card recorded (checked before unpickling)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ArtifactIntegrityError(f"{model_path}: model file not found")
    actual = files.sha256(model_path)
    if actual != card.artifact.sha256:
        raise ArtifactIntegrityError(
            f"{model_path}: sha256 {actual[:16]}… does not match the card's "
            f"{card.artifact.sha256[:16]}…; the file was modified or belongs to another model. "
            "Re-materialise the bundle from the registry."
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
