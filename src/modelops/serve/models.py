"""A verified bundle and its role in; one served model out: its card and decision rule, its live
drift window, and (once loaded) the model and its micro-batcher.

Every model a server holds is verified and loaded the same way, whatever its role: the bundle's
manifest against a digest from outside it, every file against the manifest, the model's bytes as
they are unpickled, the card's reference predictions, the fast path. A model beside the primary
must take the primary's requests and give answers of the same shape: `compatible` refuses one whose
inputs or classes differ, by the registry's own rule (`registry.lineage.contract_changes`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelops import files
from modelops.drift.profile import Profile
from modelops.errors import SchemaError
from modelops.evaluation import Decision
from modelops.logline import PRIMARY, LoggedModel
from modelops.registry import bundle
from modelops.registry.lineage import contract_changes
from modelops.serve import logs, workers
from modelops.serve.config import ServeConfig
from modelops.serve.contract import Inference, ModelDescription, ModelRef
from modelops.serve.livedrift import LiveDrift
from modelops.serve.predictor import Batcher, LoadedModel, load_model
from modelops.serve.workers import SharedCounts
from modelops.types import Row

log = logging.getLogger(logs.SERVER)


class ServedModel:
    """One verified model of the server, in the role it plays there."""

    def __init__(
        self, role: str, bundle_dir: Path, sha256: str, config: ServeConfig, index: int = 0
    ) -> None:
        self.role = role
        self.bundle_dir = bundle_dir
        self.verified = bundle.verify(bundle_dir, sha256)
        self.manifest, self.card = self.verified.manifest, self.verified.card
        self.version = self.manifest.version
        self.header = self.version.encode()  # X-Model-Version of the answers it gives
        self.evaluation: dict[str, Any] = dict(files.read_json(bundle_dir / bundle.METRICS))
        self.decision = Decision.of(self.card.feature_schema.target, self.evaluation)
        self.ref = ModelRef(self.manifest.name, self.version, self.card.artifact.sha256)
        self.logged = LoggedModel(self.manifest.name, self.version)
        # Where each of this model's features sits in the primary's rows; None: the same order.
        self.order: tuple[int, ...] | None = None
        self.live_drift: LiveDrift | None = None
        if config.drift_window != 0:
            profile_path = bundle_dir / bundle.PROFILE
            shared = workers.multiprocess()
            self.live_drift = LiveDrift.from_profile(
                Profile.decode(profile_path.read_bytes(), str(profile_path)),
                self.card.feature_schema.names,
                self.card.classes,
                config.drift_window,
                config.drift_min_rows,
                shared=SharedCounts(shared, index) if shared else None,
            )
        self.status = "loading"
        self.reason: str | None = None
        self.model: LoadedModel | None = None
        self.batcher: Batcher | None = None

    @property
    def name(self) -> str:
        """How messages name this model: its role and version."""
        return f"{self.role} {self.version}"

    def rows_of(self, rows: Sequence[Row]) -> Sequence[Row]:
        """The primary's rows in this model's feature order."""
        order = self.order
        if order is None:
            return rows
        return [tuple(row[i] for i in order) for row in rows]

    def load(self) -> LoadedModel:
        """Unpickle, prove and derive (on the model thread); raises what load_model raises."""
        started = time.perf_counter()
        model = load_model(self.bundle_dir, self.verified)
        level = logging.INFO if model.path == "fastpath" else logging.WARNING
        logs.event(
            log,
            level,
            "model ready",
            model=self.manifest.name,
            version=self.version,
            role=self.role,
            sha256=self.card.artifact.sha256,
            inference_path=model.path,
            inference_detail=model.detail,
            load_seconds=round(time.perf_counter() - started, 3),
        )
        return model

    def failed(self, reason: str) -> None:
        self.status, self.reason = "failed", reason
        logs.event(
            log,
            logging.ERROR,
            "model not ready",
            version=self.version,
            role=self.role,
            reason=reason,
        )

    def describe(self) -> ModelDescription:
        card, manifest = self.card, self.manifest
        inference = (
            Inference(self.model.path, self.model.detail) if self.model is not None else None
        )
        return ModelDescription(
            **card.provenance(),
            version=manifest.version,
            commit=manifest.commit,
            stages=manifest.stages,
            metrics=self.evaluation,
            decision=self.decision,
            ready=self.status == "ready",
            inference=inference,
        )


def compatible(primary: ServedModel, other: ServedModel) -> None:
    """Refuse a model that cannot stand beside the primary: another model's registry name, or a
    contract that differs (the registry's rule: feature names, kinds, dtypes
    and classes). Sets the model's feature order relative to the primary's."""
    if other.manifest.name != primary.manifest.name:
        raise SchemaError(
            f"{other.name} ({other.bundle_dir}) is model {other.manifest.name!r}; the primary is "
            f"{primary.manifest.name!r}: only versions of one model are served together (its "
            "prediction log and drift are one model's)"
        )
    changes = contract_changes(primary.card, other.card)
    if changes:
        raise SchemaError(
            f"{other.name} ({other.bundle_dir}) does not take the primary's requests or give "
            f"answers of the same shape: {'; '.join(changes)}"
        )
    names = primary.card.feature_schema.names
    own = other.card.feature_schema.names
    if own != names:
        other.order = tuple(names.index(n) for n in own)


def check_roster(models: Sequence[ServedModel]) -> None:
    """Every model beside the first (the primary) compatible with it, and no version twice."""
    primary = models[0]
    assert primary.role == PRIMARY
    seen: dict[str, ServedModel] = {primary.version: primary}
    for other in models[1:]:
        if other.version in seen:
            raise SchemaError(
                f"{other.name} ({other.bundle_dir}): version {other.version} is served already "
                f"(as {seen[other.version].role}); each model must be another version"
            )
        compatible(primary, other)
        seen[other.version] = other
