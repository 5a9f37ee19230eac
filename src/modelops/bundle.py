"""A model bundle directory in, a verified manifest out: what the server and the container load.

Layout of a bundle (written by `modelops registry bundle`):

    bundle.json     manifest: name, version, commit, and the sha256 of every other file
    model.joblib    the fitted Pipeline
    card.json       the model card (lineage, schema, reference predictions)
    profile.json    the frozen reference feature profile
    metrics.json    the evaluation metrics of this version

`verify_bundle` checks every file against the manifest and the model against the card *before*
anything unpickles it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from modelops import files
from modelops.card import Card, load_card, verify_artifact
from modelops.errors import ArtifactIntegrityError

MANIFEST = "bundle.json"
MODEL = "model.joblib"
CARD = "card.json"
PROFILE = "profile.json"
METRICS = "metrics.json"
CONTENTS = (MODEL, CARD, PROFILE, METRICS)
UNREGISTERED = "unregistered"


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    version: str
    commit: str
    files: dict[str, str]  # file name -> sha256
    stages: list[str] = msgspec.field(default_factory=list)  # stages the version held when bundled


def write_manifest(
    directory: Path | str, name: str, version: str, commit: str, stages: list[str]
) -> Manifest:
    directory = Path(directory)
    manifest = Manifest(
        name=name,
        version=version,
        commit=commit,
        files={f: files.sha256(directory / f) for f in CONTENTS},
        stages=stages,
    )
    files.write_bytes(
        directory / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)) + b"\n"
    )
    return manifest


def read_manifest(directory: Path | str) -> Manifest:
    path = Path(directory) / MANIFEST
    try:
        return msgspec.json.decode(path.read_bytes(), type=Manifest)
    except FileNotFoundError:
        raise ArtifactIntegrityError(
            f"{path}: bundle manifest not found; not a bundle directory"
        ) from None
    except msgspec.DecodeError as exc:
        raise ArtifactIntegrityError(f"{path}: invalid bundle manifest: {exc}") from None


def verify_bundle(directory: Path | str) -> tuple[Manifest, Card]:
    """Check every file of a bundle against its manifest and the model against the card."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for name in CONTENTS:
        path = directory / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"{path}: missing from the bundle")
        expected = manifest.files.get(name)
        actual = files.sha256(path)
        if expected != actual:
            raise ArtifactIntegrityError(
                f"{path}: sha256 {actual[:16]}… does not match the manifest's "
                f"{(expected or 'nothing')[:16]}…; re-materialise the bundle from the registry"
            )
    card = load_card(directory / CARD)
    verify_artifact(card, directory / MODEL)
    if card.name != manifest.name:
        raise ArtifactIntegrityError(
            f"{directory}: the manifest names model {manifest.name!r} but the card {card.name!r}; "
            "re-materialise the bundle from the registry"
        )
    return manifest, card
