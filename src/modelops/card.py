"""card.json bytes in, a typed `Card` out: the lineage of one trained model, and the model file's check.

The card travels with model.joblib. Before anything unpickles the model, `verify_artifact` checks
the file's sha256 against the card; after loading, `fitted.check_reference` proves the loaded object
gives the predictions the fitted pipeline gave at training time. Building a card needs the fitted
Pipeline and lives in `fitted`; this module imports no scikit-learn, so reading cards stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from modelops import files
from modelops.errors import ArtifactIntegrityError, SchemaError
from modelops.schema import FeatureSchema

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


def to_json(card: Card) -> dict[str, Any]:
    return msgspec.to_builtins(card)


def decode_card(data: bytes) -> Card:
    """card.json bytes as a Card; msgspec.DecodeError says what does not fit (not JSON, a field
    missing, unknown or of the wrong type: e.g. a card written by an older modelops)."""
    return msgspec.json.decode(data, type=Card)


def load_card(path: Path | str) -> Card:
    try:
        return decode_card(Path(path).read_bytes())
    except FileNotFoundError:
        raise SchemaError(f"{path}: model card not found") from None
    except msgspec.DecodeError as exc:
        raise SchemaError(f"{path}: not a valid model card: {exc}") from None


def verify_artifact(card: Card, model_path: Path | str) -> None:
    """Refuse a model file whose bytes are not the ones the card recorded (checked before unpickling)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ArtifactIntegrityError(f"{model_path}: model file not found")
    check_artifact_digest(card, model_path, files.sha256(model_path))


def check_artifact_digest(card: Card, model_path: Path | str, sha256: str) -> None:
    """Refuse a model file whose sha256 (computed by the caller) is not the one the card recorded."""
    if sha256 != card.artifact.sha256:
        raise ArtifactIntegrityError(
            f"{model_path}: sha256 {sha256[:16]}… does not match the card's "
            f"{card.artifact.sha256[:16]}…; the file was modified or belongs to another model. "
            "Re-materialise the bundle from the registry."
        )
