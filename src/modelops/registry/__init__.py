"""The git-tag model registry in GTO's format: tags in, versions, stages, lineage and bundles out.

tags: the tag grammar and the registry it describes (pure) · git: plumbing · lineage: what a
version is made of, typed on `card.Card` · versions: register, promote, rollback, deregister ·
champions: champions.yaml (who holds each stage, for the compare stage) and the gate's check at
registration · bundle: a version materialised and verified (imported on its own: it loads the
card's libraries).
"""

from __future__ import annotations

from modelops.registry.champions import Synced, sync
from modelops.registry.lineage import Diff, Lineage, Listing, diff, flatten, listing, read, show
from modelops.registry.tags import BUMPS, Event, Registry, Version, is_rollback, resolve
from modelops.registry.versions import (
    Deregistration,
    Transition,
    deregister,
    promote,
    register,
    rollback,
)

__all__ = [
    "BUMPS",
    "Deregistration",
    "Diff",
    "Event",
    "Lineage",
    "Listing",
    "Registry",
    "Synced",
    "Transition",
    "Version",
    "deregister",
    "diff",
    "flatten",
    "is_rollback",
    "listing",
    "promote",
    "read",
    "register",
    "resolve",
    "rollback",
    "show",
    "sync",
]
