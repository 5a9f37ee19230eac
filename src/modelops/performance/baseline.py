"""A model version named in the prediction log in; the test metrics it is judged against out.

A served version is a registry version (`v1.2.0`: the server logs its bundle's version). Its test
metrics are the `metrics/metrics.json` committed at its registration tag, read through the
registry (`modelops.registry.lineage.show`), so they are the numbers it was registered with,
whatever the workspace holds now. The one exception is `modelops.logline.WORKSPACE_VERSION`, the
version the demo log carries for the workspace's own model: its test metrics are the workspace's
current metrics/metrics.json. A version the registry cannot resolve (not registered,
no git repository, tags not fetched) gets no test metrics and the reason why, and its windows
are judged insufficient_data rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from modelops.errors import RegistryError
from modelops.logline import WORKSPACE_VERSION
from modelops.registry.lineage import show


class Baseline(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a version's test metrics came from, and the metrics (None: why not, in `note`)."""

    source: str
    metrics: dict[str, Any] | None = None
    note: str | None = None


def baselines(
    versions: Sequence[str],
    model_name: str,
    workspace_metrics: Mapping[str, Any],
    workspace_source: str,
    repo: Path | str = Path("."),
) -> dict[str, Baseline]:
    """Each version's test metrics (see the module's docstring)."""
    out: dict[str, Baseline] = {}
    for version in versions:
        if version == WORKSPACE_VERSION:
            out[version] = Baseline(workspace_source, dict(workspace_metrics))
            continue
        ref = f"{model_name}@{version}"
        try:
            lineage = show(ref, repo)
        except RegistryError as exc:
            out[version] = Baseline(f"registry {ref}", None, str(exc))
            continue
        source = f"registry {lineage.version.tag} (commit {lineage.version.commit[:12]})"
        if lineage.metrics is None:
            out[version] = Baseline(source, None, "the tagged commit holds no metrics/metrics.json")
        else:
            out[version] = Baseline(source, lineage.metrics)
    return out
