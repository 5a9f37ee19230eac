"""A repository and a ref in, what versions are made of out: typed cards, metrics, params, dvc.lock.

Cards are read as `card.Card`. A tagged commit whose card.json is not a Card this code reads (written
by an older modelops, or damaged) is still listed and shown, with the reason in `card_unreadable`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from modelops import params as params_mod
from modelops import paths
from modelops.errors import RegistryError
from modelops.gate import Comparison
from modelops.gate import Summary as GateSummary
from modelops.gate import decode as decode_comparison
from modelops.registry import git
from modelops.registry.tags import (
    Event,
    Registry,
    Version,
    build_registry,
    case_clashes,
    override_reason,
    resolve,
)

if TYPE_CHECKING:
    from modelops.card import Card, DataFingerprint


class Summary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One row of `registry list`: a version and the lineage facts a user compares versions by."""

    version: Version
    estimator: str | None
    metrics: dict[str, Any]
    data: dict[str, DataFingerprint]  # card.data: name -> {path, md5, rows}
    artifact_sha256: str | None
    card_unreadable: str | None = None  # why card.json at the commit is not a Card
    gate: GateSummary | None = None  # compare.json at the commit, if it has one this code reads
    gate_override: str | None = None  # why it was registered although the gate refused it


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    versions: list[Summary]
    stages: dict[str, str]
    events: list[Event]
    case_clashes: list[list[str]] = msgspec.field(default_factory=list)  # see tags.case_clashes


class StageLock(msgspec.Struct, frozen=True):
    """One stage of dvc.lock as path -> md5, and its params."""

    deps: dict[str, str | None]
    outs: dict[str, str | None]
    params: dict[str, dict[str, Any]]


class Lineage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything one version is made of, read from its commit."""

    version: Version
    card: Card | None
    metrics: dict[str, Any] | None
    params: dict[str, Any] | None  # params.yaml at the commit, as written
    lock: dict[str, StageLock]  # dvc.lock: stage -> {deps, outs, params}
    history: list[Event]
    card_unreadable: str | None = None  # why card.json at the commit is not a Card
    gate: Comparison | None = None  # metrics/compare.json at the commit
    gate_unreadable: str | None = None  # why compare.json at the commit is not a Comparison
    gate_override: str | None = None  # why it was registered although the gate refused it


class DiffRow(msgspec.Struct, frozen=True):
    key: str
    a: Any
    b: Any


class Diff(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    a: str
    b: str
    metrics: list[DiffRow]  # every metric either version has
    params: list[DiffRow]  # only the params that differ
    same_params: int
    data: list[DiffRow]  # data fingerprints, estimator and artifact hash
    gate: list[DiffRow]  # each version's comparison with the champion it was gated against
    card_unreadable: dict[str, str] = msgspec.field(default_factory=dict)  # tag -> why


class _LockEntry(msgspec.Struct, frozen=True):
    path: str
    md5: str | None = None
    size: int | None = None
    nfiles: int | None = None


class _LockStage(msgspec.Struct, frozen=True):
    cmd: str | list[str] = ""
    deps: list[_LockEntry] = msgspec.field(default_factory=list)
    outs: list[_LockEntry] = msgspec.field(default_factory=list)
    params: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class Lock(msgspec.Struct, frozen=True):
    stages: dict[str, _LockStage] = msgspec.field(default_factory=dict)


# ------------------------------------------------------------------------------------ reading


def model_name(repo: Path | str = Path(".")) -> str:
    """The registry name, from the working tree's params.yaml (`base.model_name`)."""
    return params_mod.load(Path(repo) / paths.PARAMS_FILE).base.model_name


def read(repo: Path | str = Path("."), name: str | None = None) -> Registry:
    """The registry of `name` (default: params' model name) as the repository's tags say now."""
    repo = Path(repo)
    return build_registry(name or model_name(repo), git.annotated_tags(repo))


def read_card(blob: bytes | None) -> tuple[Card | None, str | None]:
    """A committed card.json as (Card, None); (None, why) when it is not a Card; (None, None) when
    the commit has none."""
    # Imported here: the card's feature schema pulls in pandas, which `modelops registry --help`
    # and the commands that read no card should not wait for.
    from modelops.card import decode_card

    if blob is None:
        return None, None
    try:
        return decode_card(blob), None
    except msgspec.DecodeError as exc:
        return None, str(exc)


def parse_lock(blob: bytes, where: str) -> Lock:
    try:
        return msgspec.yaml.decode(blob, type=Lock)
    except msgspec.DecodeError as exc:
        raise RegistryError(f"dvc.lock at {where} cannot be read: {exc}") from None


def model_md5(lock: Lock, where: str) -> str:
    """The md5 dvc.lock records for the model file."""
    return out_md5(lock, paths.MODEL, where)


def out_md5(lock: Lock, path: Path, where: str) -> str:
    """The md5 dvc.lock records for the stage output `path`."""
    wanted = path.as_posix()
    for body in lock.stages.values():
        for o in body.outs:
            if o.path == wanted and o.md5:
                return o.md5
    raise RegistryError(
        f"dvc.lock at {where} records no md5 for {wanted}; run `dvc repro` and commit dvc.lock"
    )


def json_or_none(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        value = json.loads(blob)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_comparison(blob: bytes | None) -> tuple[Comparison | None, str | None]:
    """A committed compare.json as (Comparison, None); (None, why) when it is not one; (None, None)
    when the commit has none (registered before the gate existed)."""
    if blob is None:
        return None, None
    try:
        return decode_comparison(blob), None
    except msgspec.DecodeError as exc:
        return None, str(exc)


def yaml_or_none(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        value = msgspec.yaml.decode(blob)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------ views


def listing(repo: Path | str = Path(".")) -> Listing:
    """Every version with its metrics, estimator and data fingerprints, read from the tagged commits."""
    repo = Path(repo)
    registry = read(repo)
    wanted = (paths.CARD, paths.METRICS, paths.COMPARE)
    specs = [f"{v.commit}:{p.as_posix()}" for v in registry.versions for p in wanted]
    blobs = git.read_blobs(repo, specs)
    rows = []
    for i, v in enumerate(registry.versions):
        card_b, metrics_b, compare_b = blobs[3 * i : 3 * i + 3]
        card, unreadable = read_card(card_b)
        comparison = read_comparison(compare_b)[0]
        rows.append(
            Summary(
                version=v,
                estimator=card.estimator if card else None,
                metrics=json_or_none(metrics_b) or {},
                data=dict(card.data) if card else {},
                artifact_sha256=card.artifact.sha256 if card else None,
                card_unreadable=unreadable,
                gate=comparison.summary() if comparison else None,
                gate_override=override_reason(v.message),
            )
        )
    return Listing(
        name=registry.name,
        versions=rows,
        stages=registry.stages,
        events=registry.events,
        case_clashes=case_clashes(registry),
    )


def show(ref: str, repo: Path | str = Path(".")) -> Lineage:
    """The card, metrics, params and dvc.lock hashes of one version, and its registry history."""
    repo = Path(repo)
    registry = read(repo)
    v = resolve(registry, ref)
    card_b, metrics_b, params_b, lock_b, compare_b = git.read_files(
        repo,
        v.commit,
        [paths.CARD, paths.METRICS, paths.PARAMS_FILE, paths.DVC_LOCK, paths.COMPARE],
    )
    lock = parse_lock(lock_b, v.tag) if lock_b is not None else Lock()
    card, unreadable = read_card(card_b)
    comparison, gate_unreadable = read_comparison(compare_b)
    return Lineage(
        version=v,
        card=card,
        metrics=json_or_none(metrics_b),
        params=yaml_or_none(params_b),
        lock={
            stage: StageLock(
                deps={d.path: d.md5 for d in body.deps},
                outs={o.path: o.md5 for o in body.outs},
                params=body.params,
            )
            for stage, body in lock.stages.items()
        },
        history=[e for e in registry.events if e.version == v.version],
        card_unreadable=unreadable,
        gate=comparison,
        gate_unreadable=gate_unreadable,
        gate_override=override_reason(v.message),
    )


def diff(a: str, b: str, repo: Path | str = Path(".")) -> Diff:
    """Metrics, params and data fingerprints of two versions (or stages) side by side."""
    repo = Path(repo)
    left, right = show(a, repo), show(b, repo)
    lm, rm = left.metrics or {}, right.metrics or {}
    lp, rp = flatten(left.params or {}), flatten(right.params or {})
    lc, rc = left.card, right.card
    ld, rd = (lc.data if lc else {}), (rc.data if rc else {})
    data = [
        DiffRow(f"data.{k}", _fingerprint(ld.get(k)), _fingerprint(rd.get(k)))
        for k in _union(ld, rd)
    ]
    data.append(DiffRow("estimator", lc.estimator if lc else None, rc.estimator if rc else None))
    data.append(
        DiffRow(
            "artifact.sha256",
            lc.artifact.sha256 if lc else None,
            rc.artifact.sha256 if rc else None,
        )
    )
    return Diff(
        a=left.version.tag,
        b=right.version.tag,
        metrics=[DiffRow(k, lm.get(k), rm.get(k)) for k in _union(lm, rm)],
        params=[DiffRow(k, lp.get(k), rp.get(k)) for k in _union(lp, rp) if lp.get(k) != rp.get(k)],
        same_params=sum(1 for k in _union(lp, rp) if lp.get(k) == rp.get(k)),
        data=data,
        gate=[
            DiffRow(key, _gate_fact(left, key), _gate_fact(right, key))
            for key in ("verdict", "champion", "metric", "delta", "interval", "override")
        ],
        card_unreadable={
            side.version.tag: side.card_unreadable
            for side in (left, right)
            if side.card_unreadable is not None
        },
    )


def contract_changes(old: Card | None, new: Card) -> list[str]:
    """How the inputs a client sends (feature names, kinds, dtypes) or the classes it gets back
    differ between two cards; empty when they agree or there is no old card to compare with."""
    if old is None:
        return []
    of, nf = _inputs(old), _inputs(new)
    changes = [f"added feature '{n}'" for n in nf if n not in of]
    changes += [f"removed feature '{n}'" for n in of if n not in nf]
    changes += [
        f"feature '{n}' changed from {of[n]} to {nf[n]}" for n in nf if n in of and of[n] != nf[n]
    ]
    if old.classes != new.classes:
        changes.append(f"classes changed from {old.classes} to {new.classes}")
    return changes


def _inputs(card: Card) -> dict[str, str]:
    """Feature name -> what a client must send: `numeric/integer`, `numeric/float`, `categorical`."""
    from modelops.schema import NumericFeature  # loaded already: the card was decoded through it

    return {
        f.name: f"numeric/{f.dtype}" if isinstance(f, NumericFeature) else "categorical"
        for f in card.feature_schema.features
    }


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`train.max_iter`), the way DVC names params."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _gate_fact(side: Lineage, key: str) -> Any:
    """One fact of a version's comparison, for `diff`: None where it has no comparison."""
    c = side.gate
    if key == "override":
        return side.gate_override
    if c is None:
        return None
    if key == "champion":
        return f"{c.champion.version} ({c.against})" if c.champion else f"none ({c.against})"
    if key == "interval":
        return [c.interval.low, c.interval.high] if c.interval else None
    return getattr(c, key)


def _fingerprint(entry: DataFingerprint | None) -> str | None:
    if entry is None:
        return None
    return entry.md5 + (f" ({entry.rows} rows)" if entry.rows is not None else "")


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))
