"""A repository and a request in, registry tags written out: register, promote, rollback, deregister.

Invariants kept by every write here, so that `gto show` and `dvc artifacts get --stage` agree with us:
- a version is exactly a commit: clean tree, `dvc status` clean, card, profile and metrics committed;
- one version holds a stage at a time: promote and rollback unassign the holder in the same atomic
  ref transaction that assigns the newcomer;
- tags are stamped strictly after the artifact's newest tag (`git.write_tags`);
- a registration passes the champion gate (`champions.check`): its committed compare.json is the one
  dvc.lock records, was made against the version holding params' gate.against now, and is not
  `worse`, unless forced with a reason that the tag keeps;
- every change of stage rewrites champions.yaml, the compare stage's record of who holds what.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from modelops import paths
from modelops.errors import RegistryError
from modelops.registry import champions, git
from modelops.registry.lineage import (
    Lock,
    contract_changes,
    json_or_none,
    model_md5,
    model_name,
    parse_lock,
    read,
    read_card,
    yaml_or_none,
)
from modelops.registry.tags import (
    Bump,
    Registry,
    Tag,
    Version,
    check_stage_name,
    format_tag,
    holder_stack,
    next_version,
    override_trailer,
    resolve,
    rollback_trailer,
)

if TYPE_CHECKING:
    from modelops.card import Card
    from modelops.gate import Comparison

_RACE = " (another registry change happened meanwhile); run again"


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A stage changing hands (promote or rollback) and the tags that recorded it."""

    name: str
    stage: str
    version: str
    previous: str | None
    tags: list[str]
    champions: Path  # champions.yaml, rewritten: the compare stage's record of stage holders
    gated: bool  # the stage is params' gate.against: the compare stage judges against its holder


class Deregistration(msgspec.Struct, frozen=True, kw_only=True):
    """A version withdrawn, the tag that recorded it and the stages it gave up."""

    name: str
    version: str
    tag: str
    released: list[str]
    champions: Path
    gated: bool  # it held params' gate.against: the compare stage has no champion now


# ------------------------------------------------------------------------------------ register


def register(
    repo: Path | str = Path("."),
    bump: Bump | None = None,
    version: str | None = None,
    message: str | None = None,
    force_reason: str | None = None,
) -> Version:
    """Tag HEAD as the next version, if HEAD is a reproducible, complete state of the pipeline and
    the champion gate lets it in (`force_reason` overrides a `worse` verdict and is kept in the tag).

    Without `bump` or `version`, the bump is major when the model's inputs or classes changed since
    the greatest version (a client's requests would break) and minor otherwise.
    """
    repo = Path(repo)
    if bump is not None and version is not None:
        raise RegistryError("give either --bump or --version, not both")
    name = model_name(repo)
    head = git.head(repo)
    git.require_clean_tree(repo)
    registry = read(repo, name)
    already = [v for v in registry.versions if v.commit == head]
    if already:
        raise RegistryError(
            f"HEAD ({head[:8]}) is already {already[0].tag}"
            f"{' (deregistered)' if already[0].deregistered else ''}; a commit carries one version. "
            "Commit the new model state first."
        )
    card, metrics, lock, compare_blob = _committed_model(repo, head, name)
    greatest = registry.versions[0] if registry.versions else None
    changes = contract_changes(_card_of(repo, greatest), card) if greatest else []
    new = next_version(greatest, changes, bump, version)
    tag = _new_tag(
        repo, Tag(artifact=name, action="register", version=new), "; choose another version"
    )
    comparison = champions.check(repo, registry, lock, compare_blob, force_reason)
    _require_dvc_status_clean(repo)  # last: the slowest check

    text = message or _registration_message(name, new, card, metrics, comparison)
    if force_reason is not None:
        text = f"{text.rstrip()}\n\n{override_trailer(force_reason)}"
    git.write_tags(repo, [(tag, head, text)], after=registry.newest_time)
    return resolve(read(repo, name), new)


def _committed_model(
    repo: Path, head: str, name: str
) -> tuple[Card, dict[str, Any], Lock, bytes | None]:
    """The card, metrics, dvc.lock and compare.json (None if absent) at HEAD, once every file a
    version needs is committed and consistent."""
    wanted = (paths.DVC_YAML, paths.DVC_LOCK, paths.CARD, paths.METRICS, paths.PROFILE)
    hints = (
        "commit the pipeline definition",
        "run `dvc repro` and commit dvc.lock",
        "run `dvc repro` (train stage) and commit it",
        "run `dvc repro` (evaluate stage) and commit it",
        "run `dvc repro` (profile stage) and commit it",
    )
    *blobs, compare_blob = git.read_files(repo, head, [*wanted, paths.COMPARE])
    for blob, path, how in zip(blobs, wanted, hints, strict=True):
        if blob is None:
            raise RegistryError(f"{path} is not committed at HEAD ({head[:8]}); {how}")
    dvc_yaml_b, lock_b, card_b, metrics_b, _ = (b or b"" for b in blobs)
    card, unreadable = read_card(card_b)
    if card is None:
        raise RegistryError(
            f"{paths.CARD} at HEAD is not a model card ({unreadable}); "
            "run `dvc repro` and commit it"
        )
    metrics = json_or_none(metrics_b)
    if not metrics:
        raise RegistryError(
            f"{paths.METRICS} at HEAD holds no metrics; run `dvc repro` and commit it"
        )
    lock = parse_lock(lock_b, "HEAD")
    lock_md5 = model_md5(lock, "HEAD")
    if card.artifact.md5 != lock_md5:
        raise RegistryError(
            f"{paths.CARD} at HEAD describes a model with md5 {card.artifact.md5}, but dvc.lock "
            f"records {lock_md5}; run `dvc repro` and commit both"
        )
    if name not in ((yaml_or_none(dvc_yaml_b) or {}).get("artifacts") or {}):
        raise RegistryError(
            f"dvc.yaml at HEAD declares no artifact '{name}' (params base.model_name); add it to "
            "the `artifacts:` section so `dvc artifacts get` can find the model"
        )
    return card, metrics, lock, compare_blob


def _card_of(repo: Path, v: Version) -> Card | None:
    """The card of `v`; None when it has none or one this code cannot read, as a card older than the
    feature schema or this card format has no contract to compare with."""
    (blob,) = git.read_files(repo, v.commit, [paths.CARD])
    return read_card(blob)[0]


def _registration_message(
    name: str, version: str, card: Card, metrics: Mapping[str, Any], comparison: Comparison
) -> str:
    raw = card.data.get("raw")
    shown = ", ".join(
        f"{k} {metrics[k]}" for k in ("roc_auc", "roc_auc_macro", "accuracy") if k in metrics
    )
    return (
        f"register {name} {version}: {card.estimator} on data "
        f"{str(raw.md5 if raw else None)[:8]}"
        + (f"; {shown}" if shown else "")
        + f"\n{comparison.headline()}"
    )


def _require_dvc_status_clean(repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RegistryError(f"`dvc status` failed in {repo}: {proc.stderr.strip()}")
    try:
        changes = json.loads(proc.stdout or "{}")
    except ValueError:
        raise RegistryError(
            f"`dvc status --json` printed something unexpected: {proc.stdout!r}"
        ) from None
    if changes:
        raise RegistryError(
            "dvc.lock does not match the code, params and data at HEAD "
            f"({_describe_dvc_status(changes)}); run `dvc repro`, commit the result, then register"
        )


def _describe_dvc_status(changes: Mapping[str, Any]) -> str:
    """`dvc status --json` as one line: `train: changed deps: params.yaml (train modified)`."""
    parts = []
    for stage, items in changes.items():
        what = [
            line
            for item in (items if isinstance(items, list) else [items])
            for line in _describe_status_item(item)
        ]
        parts.append(f"{stage}: {'; '.join(what)}")
    return " | ".join(parts)


def _describe_status_item(item: Any) -> list[str]:
    if not isinstance(item, Mapping):
        return [str(item)]
    lines = []
    for kind, detail in item.items():
        if isinstance(detail, Mapping):
            detail = ", ".join(f"{p} {_describe_state(v)}" for p, v in detail.items())
        lines.append(f"{kind}: {detail}")
    return lines


def _describe_state(value: Any) -> str:
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k} {_describe_state(v)}" for k, v in value.items()) + ")"
    return str(value)


# ------------------------------------------------------------------------------------ stages


def promote(
    ref: str, stage: str, repo: Path | str = Path("."), message: str | None = None
) -> Transition:
    """Give `stage` to the version `ref` names; the version holding it now gives it up in the same
    atomic step, so exactly one version holds a stage."""
    repo = Path(repo)
    registry = read(repo)
    _check_stage(stage, registry.name)
    v = resolve(registry, ref)
    if v.deregistered:
        raise RegistryError(
            f"{v.tag} is deregistered and cannot hold a stage; register a new version instead"
        )
    previous = registry.stages.get(stage)
    if previous == v.version:
        raise RegistryError(f"{v.tag} already holds {stage}; nothing to do")
    note = message or f"promote {v.version} to {stage}"
    return _transition(repo, registry, stage, v, previous, rollback_trailer(note, "promote"))


def rollback(stage: str, repo: Path | str = Path(".")) -> Transition:
    """Give `stage` back to the version that held it before the current holder.

    Rollbacks stack: after v1 -> v2 -> v3, one rollback gives v2 and a second gives v1. A stage left
    empty (unassigned by another tool) goes back to its last holder. Stage tags are never deleted.
    """
    repo = Path(repo)
    registry = read(repo)
    _check_stage(stage, registry.name)
    holder = registry.stages.get(stage)
    stack = holder_stack(registry.events, stage)
    while holder is not None and stack and stack[-1] == holder:
        stack.pop()
    how = f"with `modelops registry promote <version> --stage {stage}`"
    if not stack and holder is None:
        raise RegistryError(
            f"stage '{stage}' of {registry.name} has never been held; promote a version {how}"
        )
    if not stack:
        raise RegistryError(
            f"{stage} has had no holder before {holder}; nothing to roll back to. "
            f"Promote a version explicitly {how}"
        )
    target = resolve(registry, stack[-1])
    if target.deregistered:
        raise RegistryError(
            f"{target.tag}, which held {stage} before {holder}, is deregistered; "
            f"promote a version explicitly {how}"
        )
    note = f"roll back {stage} from {holder or 'nothing'} to {target.version}"
    return _transition(repo, registry, stage, target, holder, rollback_trailer(note, "rollback"))


def deregister(
    ref: str, repo: Path | str = Path("."), force: bool = False, message: str | None = None
) -> Deregistration:
    """Withdraw a version: it keeps its history but can hold no stage and is never bundled again.

    A version that holds a stage is refused unless `force`, because the stage would be left empty
    (for us as for GTO and `dvc artifacts get`, a deregistered version holds nothing).
    """
    repo = Path(repo)
    registry = read(repo)
    v = resolve(registry, ref)
    if v.deregistered:
        raise RegistryError(f"{v.tag} is already deregistered; nothing to do")
    if v.stages and not force:
        held = ", ".join(v.stages)
        raise RegistryError(
            f"{v.tag} holds {held}; promote another version to {held} first, or pass --force "
            f"to leave {held} without a model"
        )
    withdrawal = Tag(
        artifact=registry.name,
        action="deregister",
        version=v.version,
        counter=registry.next_counter,
    )
    tag = _new_tag(repo, withdrawal, _RACE)
    against = champions.workspace_gate_stage(repo)
    released = f"; {', '.join(v.stages)} left without a model" if v.stages else ""
    text = message or f"deregister {v.version}{released}"
    git.write_tags(repo, [(tag, v.commit, text)], after=registry.newest_time)
    return Deregistration(
        name=registry.name,
        version=v.version,
        tag=tag,
        released=list(v.stages),
        champions=champions.record(repo, read(repo, registry.name), against),
        gated=against in v.stages,
    )


def _check_stage(stage: str, name: str) -> None:
    check_stage_name(stage, name)
    git.check_ref_format(format_tag(Tag(artifact=name, action="assign", stage=stage, counter=1)))


def _new_tag(repo: Path, tag: Tag, if_taken: str) -> str:
    """The name of a tag about to be written: in GTO's grammar, valid for git, and not taken."""
    text = format_tag(tag)
    git.check_ref_format(text)
    if git.ref_exists(repo, text):
        raise RegistryError(f"tag {text} already exists{if_taken}")
    return text


def _transition(
    repo: Path,
    registry: Registry,
    stage: str,
    target: Version,
    previous: str | None,
    message: str,
) -> Transition:
    name = registry.name
    counter = registry.next_counter
    writes: list[tuple[str, str, str]] = []
    if previous is not None:
        old = resolve(registry, previous)
        release = Tag(artifact=name, action="unassign", stage=stage, counter=counter)
        writes.append((_new_tag(repo, release, _RACE), old.commit, message))
        counter += 1
    assign = Tag(artifact=name, action="assign", stage=stage, counter=counter)
    writes.append((_new_tag(repo, assign, _RACE), target.commit, message))
    against = champions.workspace_gate_stage(repo)  # before any tag: a bad param writes nothing
    git.write_tags(repo, writes, after=registry.newest_time)
    return Transition(
        name=name,
        stage=stage,
        version=target.version,
        previous=previous,
        tags=[t for t, _, _ in writes],
        champions=champions.record(repo, read(repo, name), against),
        gated=stage == against,
    )
