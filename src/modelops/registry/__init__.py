"""The git-tag model registry in GTO's format: tags in, versions, stages, lineage and bundles out.

tags: the tag grammar and the registry it describes (pure) · git: plumbing · lineage: what a
version is made of, typed on `card.Card` · versions: register, promote, rollback, deregister ·
champions: champions.yaml (who holds each stage, for the compare stage) and the gate's check at
registration · bundle: a version materialised and verified (imported on its own: it loads the
card's libraries).

The names below load their module on first use (PEP 562), so that `modelops --help` or
`modelops drift check` does not pay for git, params and the gate.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Where __getattr__ looks for a name, cheapest module first.
_MODULES = ("tags", "lineage", "versions", "champions")

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


def __getattr__(name: str) -> object:
    if name in __all__:
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}")
            if hasattr(found, name):
                value = getattr(found, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
