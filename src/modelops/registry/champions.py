"""The registry's stage holders in, champions.yaml out and back; a committed compare.json and the tags
in, the gate's word on a registration out.

DVC cannot depend on a git tag, so the compare stage depends on this file instead: every modelops
command that moves a stage (promote, rollback, deregister; `registry sync` after tags moved
elsewhere) rewrites champions.yaml with, per stage, the version holding it and its model's md5 (or
null). dvc.yaml makes compare depend on the one entry for params' gate.against, so a promotion to
that stage re-runs compare and one to any other stage does not. compare reads its champion from
this file, never from the tags, so its output is a function of its recorded inputs; `register`
checks that the comparison it is shown was made against the version holding the stage now.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from modelops import files, gate, paths
from modelops import params as params_mod
from modelops.errors import ParamsError, RegistryError
from modelops.registry import git
from modelops.registry.lineage import (
    Lock,
    model_md5,
    model_name,
    out_md5,
    parse_lock,
    read,
)
from modelops.registry.tags import Registry, check_stage_name

HEADER = (
    "# Written by `modelops registry` (promote, rollback, deregister, sync): the version holding\n"
    "# each stage, its commit and its model's md5. The compare stage depends on the entry for params'\n"
    "# gate.against. Commit it with the change of stage; never edit it by hand.\n"
)


class _Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    commit: str
    model_md5: str


def gate_stage(params: params_mod.Params) -> str:
    """params' gate.against, checked by the stage-name rule."""
    against = params.gate.against
    try:
        check_stage_name(against, params.base.model_name)
    except RegistryError as exc:
        raise ParamsError(f"{paths.PARAMS_FILE}: gate.against: {exc}") from None
    return against


def workspace_gate_stage(repo: Path) -> str:
    return gate_stage(params_mod.load(repo / paths.PARAMS_FILE))


def holders(repo: Path, registry: Registry, also: str) -> dict[str, gate.ChampionRef | None]:
    """Every stage the tags name (and `also`), sorted: the version holding it, or None."""
    stages = sorted({e.stage for e in registry.events if e.stage is not None} | {also})
    held = {s: registry.stages[s] for s in stages if s in registry.stages}
    commits = {v.version: v.commit for v in registry.versions}
    locks = git.read_blobs(
        repo, [f"{commits[v]}:{paths.DVC_LOCK.as_posix()}" for v in held.values()]
    )
    out: dict[str, gate.ChampionRef | None] = dict.fromkeys(stages)
    for (stage, version), blob in zip(held.items(), locks, strict=True):
        where = f"{registry.name}@{version}"
        if blob is None:
            raise RegistryError(f"{where} has no dvc.lock in its commit; it cannot be a champion")
        md5 = model_md5(parse_lock(blob, where), where)
        out[stage] = gate.ChampionRef(
            stage=stage, version=version, commit=commits[version], model_md5=md5
        )
    return out


def record(repo: Path, registry: Registry, against: str) -> Path:
    """Write champions.yaml from the registry's tags as they are now."""
    entries = {
        stage: None if ref is None else _Entry(ref.version, ref.commit, ref.model_md5)
        for stage, ref in holders(repo, registry, against).items()
    }
    target = repo / paths.CHAMPIONS
    files.write_bytes(target, HEADER.encode() + msgspec.yaml.encode(entries))
    return target


def recorded(path: Path, stage: str) -> gate.ChampionRef | None:
    """The champion champions.yaml names for `stage` (None: no version holds it)."""
    hint = "run `modelops registry sync` to write it from the registry's tags"
    try:
        tree = msgspec.yaml.decode(path.read_bytes(), type=dict[str, _Entry | None])
    except FileNotFoundError:
        raise RegistryError(f"{path} not found; {hint}") from None
    except msgspec.DecodeError as exc:
        raise RegistryError(
            f"{path} is not what `modelops registry` writes ({exc}); {hint}"
        ) from None
    if stage not in tree:
        raise RegistryError(
            f"{path} has no entry for stage '{stage}' (params gate.against); {hint}"
        )
    entry = tree[stage]
    if entry is None:
        return None
    return gate.ChampionRef(stage, entry.version, entry.commit, entry.model_md5)


class Synced(msgspec.Struct, frozen=True, kw_only=True):
    """champions.yaml written from the tags: where, what it records, whether its bytes changed."""

    path: Path
    holders: dict[str, gate.ChampionRef | None]
    changed: bool


def sync(repo: Path | str = Path(".")) -> Synced:
    """Write champions.yaml from the tags as they are now (after tags moved outside modelops: a
    `git fetch --tags`, `gto assign`)."""
    repo = Path(repo)
    against = workspace_gate_stage(repo)
    registry = read(repo, model_name(repo))
    target = repo / paths.CHAMPIONS
    before = target.read_bytes() if target.is_file() else None
    record(repo, registry, against)
    return Synced(
        path=target,
        holders=holders(repo, registry, against),
        changed=target.read_bytes() != before,
    )


# ------------------------------------------------------------------------------ registration


def check(
    repo: Path, registry: Registry, lock: Lock, blob: bytes | None, reason: str | None
) -> gate.Comparison:
    """The committed comparison of the candidate at HEAD, if it lets the candidate in.

    Refused: no compare.json, one that dvc.lock does not record, one made against a champion that
    no longer holds the stage (stale), and a `worse` verdict unless `reason` forces it past.
    """
    where = f"{paths.COMPARE} at HEAD"
    if blob is None:
        raise RegistryError(f"{where} is not committed; run `dvc repro` (compare stage), commit it")
    if hashlib.md5(blob).hexdigest() != out_md5(lock, paths.COMPARE, "HEAD"):
        raise RegistryError(
            f"{where} is not the one dvc.lock records; run `dvc repro` and commit both"
        )
    try:
        comparison = gate.decode(blob)
    except msgspec.DecodeError as exc:
        raise RegistryError(f"{where} cannot be read ({exc}); run `dvc repro`, commit it") from None
    stage = comparison.against
    now = holders(repo, registry, stage)[stage]
    if now != comparison.champion:
        then = comparison.champion.version if comparison.champion else "no champion"
        held = f"{now.version} holds it now" if now else "no version holds it now"
        raise RegistryError(
            f"{where} judged the candidate against {then} for stage '{stage}', but {held}: the "
            "comparison is stale. Run `modelops registry sync` (records the holder in "
            f"{paths.CHAMPIONS}), `dvc repro`, commit, then register"
        )
    refused = comparison.verdict in gate.REFUSED
    if refused and reason is None:
        raise RegistryError(
            "the gate refuses this candidate: "
            + "\n".join(comparison.lines())
            + '\nto register it anyway: modelops registry register --force --reason "why"'
        )
    if not refused and reason is not None:
        raise RegistryError(
            f"the gate lets this candidate in ({comparison.verdict}); --force is not needed"
        )
    return comparison
