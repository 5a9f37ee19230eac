"""Git tags in GTO's grammar in; registry state, version lineage and verified bundles out.

A version is an annotated tag `<name>@vX.Y.Z` on the commit whose dvc.lock, card and metrics describe
the model; a stage is held through `<name>#<stage>#N` tags and released through `<name>#<stage>!#N`.
Everything a version is made of is read from its commit with git plumbing, never by checking out.

Invariants kept by every write here, so that `gto show` and `dvc artifacts get --stage` agree with us:
- one version holds a stage at a time: promote and rollback unassign the holder in the same atomic
  ref transaction that assigns the newcomer;
- tags are stamped strictly after the artifact's newest tag, because GTO and DVC order registry events
  by tagger time at one-second resolution.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from gto.constants import name_re, tag_re

from modelops import files, paths
from modelops import params as params_mod
from modelops.errors import ArtifactIntegrityError, RegistryError

if TYPE_CHECKING:
    from modelops.bundle import Manifest

Action = Literal["register", "deregister", "assign", "unassign"]
Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")
LATEST = "latest"
DVC_YAML = Path("dvc.yaml")
DVC_LOCK = Path("dvc.lock")

# Marks the tags a rollback writes, so a later rollback steps further back instead of undoing it.
_OPERATION_TRAILER = "Modelops-Operation"
_ROLLBACK_RE = re.compile(rf"^{_OPERATION_TRAILER}:\s*rollback\s*$", re.MULTILINE)
_SEMVER_RE = re.compile(
    r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$"
)
_FIELDS = 7  # fields per tag in _FOR_EACH_REF
_FOR_EACH_REF = (
    "%00".join(
        (
            "%(refname:strip=2)",
            "%(objecttype)",
            "%(*objectname)",
            "%(taggerdate:unix)",
            "%(taggername)",
            "%(taggeremail)",
            "%(contents)",
        )
    )
    + "%00"
)  # closes every field, so a message cannot run into the next tag's name


# ---------------------------------------------------------------------------------------- types


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One registry tag: a version registered or deregistered, a stage assigned or unassigned."""

    tag: str
    action: Action
    commit: str
    time: int  # tagger time, unix seconds: the order GTO and DVC read the registry in
    author: str
    message: str
    version: str | None = None  # stage tags: the version registered at the tagged commit
    stage: str | None = None
    counter: int | None = None

    @property
    def date(self) -> str:
        return format_time(self.time)


class Version(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    commit: str
    time: int  # registration tag time
    author: str
    message: str
    deregistered: bool = False
    stages: list[str] = msgspec.field(default_factory=list)  # stages this version holds now

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def date(self) -> str:
        return format_time(self.time)


class Registry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    versions: list[Version]  # greatest first
    stages: dict[str, str]  # stage -> version holding it now
    events: list[Event]  # oldest first


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """One row of `registry list`: a version and the lineage facts a user compares versions by."""

    version: Version
    estimator: str | None
    metrics: dict[str, Any]
    data: dict[str, dict[str, Any]]  # card.data: name -> {path, md5, rows}
    artifact_sha256: str | None


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    versions: list[Summary]
    stages: dict[str, str]
    events: list[Event]


class Lineage(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one version is made of, read from its commit."""

    version: Version
    card: dict[str, Any] | None
    metrics: dict[str, Any] | None
    params: dict[str, Any] | None  # params.yaml at the commit, as written
    lock: dict[str, dict[str, Any]]  # dvc.lock: stage -> {deps, outs, params}
    history: list[Event]


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A stage changing hands (promote or rollback) and the tags that recorded it."""

    name: str
    stage: str
    version: str
    previous: str | None
    tags: list[str]


class Deregistration(msgspec.Struct, frozen=True, kw_only=True):
    """A version withdrawn, the tag that recorded it and the stages it gave up."""

    name: str
    version: str
    tag: str
    released: list[str]


class DiffRow(msgspec.Struct, frozen=True):
    key: str
    a: Any
    b: Any


class Diff(msgspec.Struct, frozen=True, kw_only=True):
    a: str
    b: str
    metrics: list[DiffRow]  # every metric either version has
    params: list[DiffRow]  # only the params that differ
    same_params: int
    data: list[DiffRow]  # data fingerprints, estimator and artifact hash


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


class _Lock(msgspec.Struct, frozen=True):
    stages: dict[str, _LockStage] = msgspec.field(default_factory=dict)


class TagRecord(msgspec.Struct, frozen=True):
    """An annotated tag as git stores it: name, peeled commit, tagger time and identity, message."""

    name: str
    commit: str
    time: int
    author: str
    message: str


# ------------------------------------------------------------------------------------ reading


def format_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def model_name(repo: Path | str = Path(".")) -> str:
    """The registry name, from the working tree's params.yaml (`base.model_name`)."""
    return params_mod.load(Path(repo) / params_mod.PARAMS_FILE).base.model_name


def read(repo: Path | str = Path("."), name: str | None = None) -> Registry:
    """The registry of `name` (default: params' model name) as the repository's tags say now."""
    repo = Path(repo)
    name = name or model_name(repo)
    return build_registry(name, _annotated_tags(repo))


def build_registry(name: str, tags: Iterable[TagRecord]) -> Registry:
    """Interpret GTO-grammar tags of `name` (pure: no git), the way GTO's default view does."""
    parsed: list[Event] = []
    for raw in tags:
        event = _parse_tag(name, raw)
        if event is not None:
            parsed.append(event)
    parsed.sort(key=_event_order)

    versions: dict[str, list[Event]] = {}
    by_commit: dict[str, str] = {}
    for e in parsed:
        if e.version is not None and e.action in ("register", "deregister"):
            versions.setdefault(e.version, []).append(e)
            if e.action == "register":
                by_commit[e.commit] = e.version

    events = [
        msgspec.structs.replace(e, version=by_commit.get(e.commit)) if e.stage else e
        for e in parsed
    ]
    deregistered = {v for v, evs in versions.items() if evs[-1].action == "deregister"}

    # A stage is active on a version while its latest assign/unassign there is an assign; if tags
    # written by other tools leave several active, the latest assignment wins (GTO's default).
    latest: dict[tuple[str, str], Event] = {}
    for e in events:
        if e.stage is not None and e.version is not None:
            latest[(e.stage, e.version)] = e
    holders: dict[str, Event] = {}
    for (stage, version), e in latest.items():
        if e.action != "assign" or version in deregistered:
            continue
        if stage not in holders or _event_order(e) > _event_order(holders[stage]):
            holders[stage] = e
    stages = {stage: e.version for stage, e in sorted(holders.items()) if e.version}

    out: list[Version] = []
    for version, evs in versions.items():
        registration = next((e for e in reversed(evs) if e.action == "register"), None)
        if registration is None:  # deregistered without ever being registered here
            continue
        out.append(
            Version(
                name=name,
                version=version,
                commit=registration.commit,
                time=registration.time,
                author=registration.author,
                message=registration.message,
                deregistered=version in deregistered,
                stages=[s for s, v in stages.items() if v == version],
            )
        )
    out.sort(key=lambda v: _semver_key(v.version), reverse=True)
    return Registry(name=name, versions=out, stages=stages, events=events)


def resolve(registry: Registry, ref: str) -> Version:
    """A version from `v1.2.0`, `1.2.0`, `<name>@v1.2.0`, `latest`, a stage name or `<name>#<stage>`."""
    name = registry.name
    known = ", ".join(v.version for v in registry.versions) or "none yet"
    version: str | None = None
    stage: str | None = None
    if ref.startswith(f"{name}@"):
        version = ref.removeprefix(f"{name}@")
    elif ref.startswith(f"{name}#"):
        stage = ref.removeprefix(f"{name}#")
    elif "@" in ref or "#" in ref:
        raise RegistryError(
            f"'{ref}' names another model; this registry holds '{name}' (params base.model_name)"
        )
    elif ref == LATEST:
        active = [v for v in registry.versions if not v.deregistered]
        if not active:
            raise RegistryError(
                f"{name} has no registered version yet; run `modelops registry register`"
            )
        return active[0]
    elif _SEMVER_RE.match(ref) or _SEMVER_RE.match(f"v{ref}"):
        version = ref if ref.startswith("v") else f"v{ref}"
    else:
        stage = ref

    if version is not None:
        for v in registry.versions:
            if v.version == version:
                return v
        raise RegistryError(
            f"{name} has no version '{version}' (known: {known}); see `modelops registry list`"
        )
    assert stage is not None
    holder = registry.stages.get(stage)
    if holder is None:
        held = ", ".join(f"{s} ({v})" for s, v in registry.stages.items()) or "none"
        raise RegistryError(
            f"no version of {name} holds stage '{stage}' (stages held now: {held}); "
            f"assign one with `modelops registry promote <version> --stage {stage}`"
        )
    return next(v for v in registry.versions if v.version == holder)


def listing(repo: Path | str = Path(".")) -> Listing:
    """Every version with its metrics, estimator and data fingerprints, read from the tagged commits."""
    repo = Path(repo)
    registry = read(repo)
    specs = [
        f"{v.commit}:{p.as_posix()}" for v in registry.versions for p in (paths.CARD, paths.METRICS)
    ]
    blobs = _read_blobs(repo, specs)
    rows = []
    for i, v in enumerate(registry.versions):
        card = _json_or_none(blobs[2 * i])
        metrics = _json_or_none(blobs[2 * i + 1])
        rows.append(
            Summary(
                version=v,
                estimator=card.get("estimator") if card else None,
                metrics=metrics or {},
                data=card.get("data", {}) if card else {},
                artifact_sha256=(card.get("artifact") or {}).get("sha256") if card else None,
            )
        )
    return Listing(
        name=registry.name, versions=rows, stages=registry.stages, events=registry.events
    )


def lineage(ref: str, repo: Path | str = Path(".")) -> Lineage:
    """The card, metrics, params and dvc.lock hashes of one version, and its registry history."""
    repo = Path(repo)
    registry = read(repo)
    v = resolve(registry, ref)
    card, metrics, params_b, lock_b = _read_blobs(
        repo,
        [
            f"{v.commit}:{p.as_posix()}"
            for p in (paths.CARD, paths.METRICS, params_mod.PARAMS_FILE, DVC_LOCK)
        ],
    )
    lock: dict[str, dict[str, Any]] = {}
    if lock_b is not None:
        for stage, body in _parse_lock(lock_b, v.tag).stages.items():
            lock[stage] = {
                "deps": {d.path: d.md5 for d in body.deps},
                "outs": {o.path: o.md5 for o in body.outs},
                "params": body.params,
            }
    return Lineage(
        version=v,
        card=_json_or_none(card),
        metrics=_json_or_none(metrics),
        params=_yaml_or_none(params_b),
        lock=lock,
        history=[e for e in registry.events if e.version == v.version],
    )


def diff(a: str, b: str, repo: Path | str = Path(".")) -> Diff:
    """Metrics, params and data fingerprints of two versions (or stages) side by side."""
    repo = Path(repo)
    left, right = lineage(a, repo), lineage(b, repo)
    lm, rm = left.metrics or {}, right.metrics or {}
    metrics = [DiffRow(k, lm.get(k), rm.get(k)) for k in _union(lm, rm)]
    lp, rp = flatten(left.params or {}), flatten(right.params or {})
    params = [DiffRow(k, lp.get(k), rp.get(k)) for k in _union(lp, rp) if lp.get(k) != rp.get(k)]
    same = sum(1 for k in _union(lp, rp) if lp.get(k) == rp.get(k))
    lc, rc = left.card or {}, right.card or {}
    ld, rd = lc.get("data", {}), rc.get("data", {})
    data = [
        DiffRow(f"data.{k}", _fingerprint(ld.get(k)), _fingerprint(rd.get(k)))
        for k in _union(ld, rd)
    ]
    data.append(DiffRow("estimator", lc.get("estimator"), rc.get("estimator")))
    data.append(
        DiffRow(
            "artifact.sha256",
            (lc.get("artifact") or {}).get("sha256"),
            (rc.get("artifact") or {}).get("sha256"),
        )
    )
    return Diff(
        a=left.version.tag,
        b=right.version.tag,
        metrics=metrics,
        params=params,
        same_params=same,
        data=data,
    )


# ------------------------------------------------------------------------------------ writing


def register(
    repo: Path | str = Path("."),
    bump: Bump | None = None,
    version: str | None = None,
    message: str | None = None,
) -> Version:
    """Tag HEAD as the next version, if HEAD is a reproducible, complete state of the pipeline.

    Without `bump` or `version`, the bump is major when the model's inputs or classes changed since
    the greatest version (a client's requests would break) and minor otherwise.
    """
    repo = Path(repo)
    if bump is not None and version is not None:
        raise RegistryError("give either --bump or --version, not both")
    name = model_name(repo)
    head = _head(repo)
    _require_clean_tree(repo)
    registry = read(repo, name)
    already = [v for v in registry.versions if v.commit == head]
    if already:
        raise RegistryError(
            f"HEAD ({head[:8]}) is already {already[0].tag}"
            f"{' (deregistered)' if already[0].deregistered else ''}; a commit carries one version. "
            "Commit the new model state first."
        )

    card_b, metrics_b, profile_b, lock_b, dvc_yaml_b = _read_blobs(
        repo,
        [
            f"{head}:{p.as_posix()}"
            for p in (paths.CARD, paths.METRICS, paths.PROFILE, DVC_LOCK, DVC_YAML)
        ],
    )
    for blob, path, how in (
        (dvc_yaml_b, DVC_YAML, "commit the pipeline definition"),
        (lock_b, DVC_LOCK, "run `dvc repro` and commit dvc.lock"),
        (card_b, paths.CARD, "run `dvc repro` (train stage) and commit it"),
        (metrics_b, paths.METRICS, "run `dvc repro` (evaluate stage) and commit it"),
        (profile_b, paths.PROFILE, "run `dvc repro` (profile stage) and commit it"),
    ):
        if blob is None:
            raise RegistryError(f"{path} is not committed at HEAD ({head[:8]}); {how}")
    assert card_b is not None and lock_b is not None and dvc_yaml_b is not None
    card = _json_or_none(card_b)
    if card is None:
        raise RegistryError(
            f"{paths.CARD} at HEAD is not valid JSON; run `dvc repro` and commit it"
        )
    if not _json_or_none(metrics_b):
        raise RegistryError(
            f"{paths.METRICS} at HEAD holds no metrics; run `dvc repro` and commit it"
        )
    lock_md5 = _model_md5(_parse_lock(lock_b, "HEAD"), "HEAD")
    card_md5 = (card.get("artifact") or {}).get("md5")
    if card_md5 != lock_md5:
        raise RegistryError(
            f"{paths.CARD} at HEAD describes a model with md5 {card_md5}, but dvc.lock records "
            f"{lock_md5}; run `dvc repro` and commit both"
        )
    declared = (_yaml_or_none(dvc_yaml_b) or {}).get("artifacts") or {}
    if name not in declared:
        raise RegistryError(
            f"dvc.yaml at HEAD declares no artifact '{name}' (params base.model_name); add it to "
            "the `artifacts:` section so `dvc artifacts get` can find the model"
        )

    greatest = registry.versions[0] if registry.versions else None
    changes: list[str] = []
    if greatest is not None:
        (old_card,) = _read_blobs(repo, [f"{greatest.commit}:{paths.CARD.as_posix()}"])
        changes = contract_changes(_json_or_none(old_card), card)
    new = next_version(greatest, changes, bump, version)
    tag = f"{name}@{new}"
    _check_tag_name(tag, name, version=new)
    if _ref_exists(repo, tag):
        raise RegistryError(f"tag {tag} already exists; choose another version")
    _require_dvc_status_clean(repo)  # last: the slowest check

    text = message or _registration_message(name, new, card, _json_or_none(metrics_b) or {})
    _write_tags(repo, registry, [(tag, head, text)])
    return resolve(read(repo, name), new)


def promote(
    ref: str, stage: str, repo: Path | str = Path("."), message: str | None = None
) -> Transition:
    """Give `stage` to the version `ref` names; the version holding it now gives it up in the same
    atomic step, so exactly one version holds a stage."""
    repo = Path(repo)
    registry = read(repo)
    _check_stage_name(stage, registry.name)
    v = resolve(registry, ref)
    if v.deregistered:
        raise RegistryError(
            f"{v.tag} is deregistered and cannot hold a stage; register a new version instead"
        )
    previous = registry.stages.get(stage)
    if previous == v.version:
        raise RegistryError(f"{v.tag} already holds {stage}; nothing to do")
    note = message or f"promote {v.version} to {stage}"
    return _transition(repo, registry, stage, v, previous, note, "promote")


def rollback(stage: str, repo: Path | str = Path(".")) -> Transition:
    """Give `stage` back to the version that held it before the current holder.

    Rollbacks stack: after v1 -> v2 -> v3, one rollback gives v2 and a second gives v1. A stage left
    empty (unassigned by another tool) goes back to its last holder. Stage tags are never deleted.
    """
    repo = Path(repo)
    registry = read(repo)
    _check_stage_name(stage, registry.name)
    holder = registry.stages.get(stage)
    stack = holder_stack(registry.events, stage)
    if holder is not None:
        while stack and stack[-1] == holder:
            stack.pop()
    if not stack:
        if holder is None:
            raise RegistryError(
                f"stage '{stage}' of {registry.name} has never been held; "
                f"promote a version with `modelops registry promote <version> --stage {stage}`"
            )
        raise RegistryError(
            f"{stage} has had no holder before {holder}; nothing to roll back to. "
            f"Promote a version explicitly with `modelops registry promote <version> --stage {stage}`"
        )
    target = resolve(registry, stack[-1])
    if target.deregistered:
        raise RegistryError(
            f"{target.tag}, which held {stage} before {holder}, is deregistered; "
            f"promote a version explicitly with `modelops registry promote <version> --stage {stage}`"
        )
    note = f"roll back {stage} from {holder or 'nothing'} to {target.version}"
    return _transition(repo, registry, stage, target, holder, note, "rollback")


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
    counter = max((e.counter or 0 for e in registry.events), default=0) + 1
    tag = f"{registry.name}@{v.version}!#{counter}"
    _check_tag_name(tag, registry.name, version=v.version)
    if _ref_exists(repo, tag):
        raise RegistryError(
            f"tag {tag} already exists (another registry change happened meanwhile); run again"
        )
    released = f"; {', '.join(v.stages)} left without a model" if v.stages else ""
    text = message or f"deregister {v.version}{released}"
    _write_tags(repo, registry, [(tag, v.commit, text)])
    return Deregistration(name=registry.name, version=v.version, tag=tag, released=list(v.stages))


def is_rollback(event: Event) -> bool:
    return bool(_ROLLBACK_RE.search(event.message))


def holder_stack(events: Sequence[Event], stage: str) -> list[str]:
    """The versions that held `stage`, oldest first, with rolled-back tenures removed (pure)."""
    stack: list[str] = []
    for e in events:
        if e.stage != stage or e.action != "assign" or e.version is None:
            continue
        if is_rollback(e) and stack:
            stack.pop()
        if not stack or stack[-1] != e.version:
            stack.append(e.version)
    return stack


# ------------------------------------------------------------------------------------ bundles


def materialise(ref: str, out: Path, repo: Path = Path(".")) -> Manifest:
    """Write the bundle of the version `ref` names into `out`, verified against its commit.

    model.joblib comes from the DVC cache or remote; its md5 must equal the one in the tagged
    commit's dvc.lock and its sha256 the one in the card. `out` is replaced only when all is well.
    """
    # Imported here: the card pulls in scikit-learn and pandas, seconds of start-up that `list`,
    # `show` and the other registry commands do not need.
    from modelops import bundle
    from modelops.card import load_card, verify_artifact

    repo, out = Path(repo), Path(out)
    registry = read(repo)
    v = resolve(registry, ref)
    if v.deregistered:
        raise RegistryError(f"{v.tag} is deregistered; bundle a registered version instead")
    wanted = (paths.CARD, paths.PROFILE, paths.METRICS, DVC_LOCK)
    blobs = _read_blobs(repo, [f"{v.commit}:{p.as_posix()}" for p in wanted])
    for blob, path in zip(blobs, wanted, strict=True):
        if blob is None:
            raise RegistryError(
                f"{v.tag}: {path} is not in commit {v.commit[:8]}; it cannot be bundled"
            )
    card_b, profile_b, metrics_b, lock_b = (b or b"" for b in blobs)
    lock_md5 = _model_md5(_parse_lock(lock_b, v.tag), v.tag)
    _check_bundle_target(out, bundle.MANIFEST)

    with files.atomic_dir(out) as tmp:
        (tmp / bundle.CARD).write_bytes(card_b)
        (tmp / bundle.PROFILE).write_bytes(profile_b)
        (tmp / bundle.METRICS).write_bytes(metrics_b)
        card = load_card(tmp / bundle.CARD)
        if card.artifact.md5 != lock_md5:
            raise ArtifactIntegrityError(
                f"{v.tag}: the card records model md5 {card.artifact.md5} but dvc.lock records "
                f"{lock_md5}; the commit is inconsistent and cannot be bundled"
            )
        model = tmp / bundle.MODEL
        _fetch_model(repo, v, lock_md5, model)
        got = files.md5(model)
        if got != lock_md5:
            raise ArtifactIntegrityError(
                f"{v.tag}: {paths.MODEL} fetched from DVC storage has md5 {got}, but dvc.lock at "
                f"{v.commit[:8]} records {lock_md5}; the stored copy is corrupt. Delete "
                f"files/md5/{lock_md5[:2]}/{lock_md5[2:]} from the DVC cache (`dvc cache dir` "
                "shows where) and run `dvc pull`, or reproduce it at that commit with `dvc repro`"
            )
        verify_artifact(card, model)
        manifest = bundle.write_manifest(tmp, v.name, v.version, v.commit, list(v.stages))
        bundle.verify_bundle(tmp)  # the server's own check, before the bundle is published
        # Temporary files are private (0600/0700); a bundle is read by a server or container user.
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
    return manifest


# ------------------------------------------------------------------------------------ helpers


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RegistryError(f"`git {' '.join(args[:2])}` failed in {repo}: {err}")
    return proc.stdout


def _head(repo: Path) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
    except RegistryError:
        raise RegistryError(
            f"{repo} has no commit to register (or is not a git repository)"
        ) from None


def _annotated_tags(repo: Path) -> list[TagRecord]:
    out = _git(repo, "for-each-ref", f"--format={_FOR_EACH_REF}", "refs/tags").decode(
        errors="replace"
    )
    fields = out.split("\0")
    tags = []
    # Every field ends with NUL; the newline for-each-ref puts after each record lands at the start
    # of the next record's first field (a tag name never starts with one).
    for i in range(0, len(fields) - _FIELDS + 1, _FIELDS):
        name, objtype, peeled, when, who, email, message = fields[i : i + _FIELDS]
        name = name.lstrip("\n")
        if objtype != "tag" or not peeled or not when:
            continue  # lightweight tags are not registry events (GTO skips them too)
        tags.append(
            TagRecord(
                name=name,
                commit=peeled,
                time=int(when),
                author=f"{who} {email}".strip(),
                message=message.strip(),
            )
        )
    return tags


def _parse_tag(name: str, raw: TagRecord) -> Event | None:
    m = tag_re.match(raw.name)
    if m is None or m["artifact"] != name or not (m["version"] or m["stage"]):
        return None
    cancel = m["cancel"] == "!"
    is_version = bool(m["version"])
    actions: dict[tuple[bool, bool], Action] = {
        (True, False): "register",
        (True, True): "deregister",
        (False, False): "assign",
        (False, True): "unassign",
    }
    action = actions[(is_version, cancel)]
    return Event(
        tag=raw.name,
        action=action,
        commit=raw.commit,
        time=raw.time,
        author=raw.author,
        message=raw.message,
        version=m["version"] if is_version else None,
        stage=None if is_version else m["stage"],
        counter=int(m["counter"]) if m["counter"] else None,
    )


def _event_order(e: Event) -> tuple[int, int, str]:
    return (e.time, e.counter or 0, e.tag)


def _semver_key(version: str) -> tuple[int, int, int, int, str]:
    m = _SEMVER_RE.match(version)
    if m is None:
        return (-1, -1, -1, 0, version)
    pre = m[4] or ""
    # A pre-release sorts before its release.
    return (int(m[1]), int(m[2]), int(m[3]), 0 if pre else 1, pre)


def _read_blobs(repo: Path, specs: Sequence[str]) -> list[bytes | None]:
    """Contents of `<commit>:<path>` specs through one `git cat-file --batch`; None where missing."""
    if not specs:
        return []
    out = _git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode())
    result: list[bytes | None] = []
    pos = 0
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            result.append(out[pos : pos + size])
            pos += size + 1
        else:
            result.append(None)
    return result


def _json_or_none(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        value = json.loads(blob)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _yaml_or_none(blob: bytes | None) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        value = msgspec.yaml.decode(blob)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _parse_lock(blob: bytes, where: str) -> _Lock:
    try:
        return msgspec.yaml.decode(blob, type=_Lock)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RegistryError(f"dvc.lock at {where} cannot be read: {exc}") from None


def _model_md5(lock: _Lock, where: str) -> str:
    model = paths.MODEL.as_posix()
    for body in lock.stages.values():
        for o in body.outs:
            if o.path == model and o.md5:
                return o.md5
    raise RegistryError(
        f"dvc.lock at {where} records no md5 for {model}; run `dvc repro` and commit dvc.lock"
    )


def _fingerprint(entry: Mapping[str, Any] | None) -> str | None:
    if not entry:
        return None
    rows = entry.get("rows")
    return f"{entry.get('md5')}" + (f" ({rows} rows)" if rows is not None else "")


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))


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


def _require_clean_tree(repo: Path) -> None:
    status = _git(repo, "status", "--porcelain", "--untracked-files=all").decode().splitlines()
    if status:
        shown = "; ".join(line.strip() for line in status[:5]) + ("; …" if len(status) > 5 else "")
        raise RegistryError(
            f"the working tree is not clean ({shown}); a version must be exactly a commit, "
            "so commit or stash these changes first"
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

    def state(value: Any) -> str:
        if isinstance(value, Mapping):
            return "(" + ", ".join(f"{k} {state(v)}" for k, v in value.items()) + ")"
        return str(value)

    parts = []
    for stage, items in changes.items():
        what: list[str] = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, Mapping):
                for kind, detail in item.items():
                    if isinstance(detail, Mapping):
                        detail = ", ".join(f"{p} {state(v)}" for p, v in detail.items())
                    what.append(f"{kind}: {detail}")
            else:
                what.append(str(item))
        parts.append(f"{stage}: {'; '.join(what)}")
    return " | ".join(parts)


def contract_changes(old_card: Mapping[str, Any] | None, new_card: Mapping[str, Any]) -> list[str]:
    """How the inputs a client sends (feature names, kinds, dtypes) or the classes it gets back
    differ between two cards; empty when they agree or the old card predates feature schemas."""
    old, new = _contract(old_card), _contract(new_card)
    if old is None or new is None:
        return []
    changes = []
    of, nf = old["features"], new["features"]
    changes += [f"added feature '{n}'" for n in nf if n not in of]
    changes += [f"removed feature '{n}'" for n in of if n not in nf]
    changes += [
        f"feature '{n}' changed from {'/'.join(filter(None, of[n]))} "
        f"to {'/'.join(filter(None, nf[n]))}"
        for n in nf
        if n in of and of[n] != nf[n]
    ]
    if old["classes"] != new["classes"]:
        changes.append(f"classes changed from {old['classes']} to {new['classes']}")
    return changes


def _contract(card: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not card or "feature_schema" not in card:
        return None
    features = {
        f["name"]: (f.get("kind"), f.get("dtype"))
        for f in card["feature_schema"].get("features", [])
    }
    return {"features": features, "classes": card.get("classes")}


def next_version(
    greatest: Version | None,
    changes: Sequence[str],
    bump: Bump | None = None,
    version: str | None = None,
) -> str:
    """The version a registration gets (pure). Changed inputs (`changes`) demand a new major."""
    base = _SEMVER_RE.match(greatest.version) if greatest else None
    major, minor, patch = (int(base[1]), int(base[2]), int(base[3])) if base else (0, 0, 0)
    if version is not None:
        m = _SEMVER_RE.match(version)
        if m is None or m[4] is not None or "+" in version:
            raise RegistryError(
                f"version '{version}' is not of the form vMAJOR.MINOR.PATCH (e.g. v1.2.0)"
            )
        if changes and greatest is not None and int(m[1]) <= major:
            raise RegistryError(_major_needed(greatest, changes))
        return version
    if bump is None:
        bump = "major" if changes or greatest is None else "minor"
    elif changes and bump != "major" and greatest is not None:
        raise RegistryError(_major_needed(greatest, changes))
    if bump == "major":
        return f"v{major + 1}.0.0"
    if bump == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


def _major_needed(greatest: Version, changes: Sequence[str]) -> str:
    return (
        f"the model's inputs changed since {greatest.tag} ({'; '.join(changes)}): requests built "
        "for it would break, so this must be a new major version; use --bump major (or no --bump)"
    )


def _registration_message(
    name: str, version: str, card: Mapping[str, Any], metrics: Mapping[str, Any]
) -> str:
    data = (card.get("data") or {}).get("raw") or {}
    shown = ", ".join(
        f"{k} {metrics[k]}" for k in ("roc_auc", "roc_auc_macro", "accuracy") if k in metrics
    )
    return (
        f"register {name} {version}: {card.get('estimator')} on data {str(data.get('md5'))[:8]}"
        + (f"; {shown}" if shown else "")
    )


def _check_stage_name(stage: str, name: str) -> None:
    if not name_re.match(stage) or stage == LATEST or _SEMVER_RE.match(stage):
        raise RegistryError(
            f"'{stage}' is not a valid stage name: use letters, digits, '-', '_' or '/', starting and "
            "ending with a letter or digit (e.g. prod, staging), and not 'latest' or a version"
        )
    _check_tag_name(f"{name}#{stage}#1", name, stage=stage)


def _check_tag_name(
    tag: str, name: str, version: str | None = None, stage: str | None = None
) -> None:
    """Refuse a tag GTO would not read back as the same event, or git would not store."""
    m = tag_re.match(tag)
    if m is None or m["artifact"] != name or m["version"] != version or m["stage"] != stage:
        raise RegistryError(f"'{tag}' is not a tag in GTO's grammar; nothing was written")
    proc = subprocess.run(
        ["git", "check-ref-format", f"refs/tags/{tag}"], capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RegistryError(f"'{tag}' is not a valid git tag name; nothing was written")


def _ref_exists(repo: Path, tag: str) -> bool:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def _transition(
    repo: Path,
    registry: Registry,
    stage: str,
    target: Version,
    previous: str | None,
    note: str,
    operation: Literal["promote", "rollback"],
) -> Transition:
    name = registry.name
    counter = max((e.counter or 0 for e in registry.events), default=0)
    text = f"{note}\n\n{_OPERATION_TRAILER}: {operation}"
    writes: list[tuple[str, str, str]] = []
    if previous is not None:
        old = resolve(registry, previous)
        counter += 1
        writes.append((f"{name}#{stage}!#{counter}", old.commit, text))
    counter += 1
    writes.append((f"{name}#{stage}#{counter}", target.commit, text))
    for tag, _, _ in writes:
        _check_tag_name(tag, name, stage=stage)
        if _ref_exists(repo, tag):
            raise RegistryError(
                f"tag {tag} already exists (another registry change happened meanwhile); run again"
            )
    _write_tags(repo, registry, writes)
    return Transition(
        name=name,
        stage=stage,
        version=target.version,
        previous=previous,
        tags=[t for t, _, _ in writes],
    )


def _write_tags(repo: Path, registry: Registry, writes: Sequence[tuple[str, str, str]]) -> None:
    """Create annotated tags (name, commit, message) all at once or not at all.

    Tag objects are written first (unreferenced until the end); one `git update-ref --stdin`
    transaction then creates every ref or, if any exists already, none.
    """
    ident = _git(repo, "var", "GIT_COMMITTER_IDENT").decode().strip()
    who, _, tz = ident.rsplit(" ", 2)
    # Strictly after every existing tag of this model: GTO and DVC sort events by tagger time in
    # whole seconds, so two tags in the same second could be read in the wrong order.
    newest = max((e.time for e in registry.events), default=0)
    stamp = max(int(time.time()), newest + 1)
    lines = []
    for i, (tag, commit, message) in enumerate(writes):
        body = (
            f"object {commit}\ntype commit\ntag {tag}\ntagger {who} {stamp + i} {tz}\n\n"
            f"{message.rstrip()}\n"
        )
        oid = _git(repo, "mktag", stdin=body.encode()).decode().strip()
        lines.append(f"create refs/tags/{tag} {oid}\n")
    try:
        _git(repo, "update-ref", "--stdin", stdin="".join(lines).encode())
    except RegistryError as exc:
        raise RegistryError(f"no tag was written: {exc}; run again") from None


def _check_bundle_target(out: Path, manifest_name: str) -> None:
    if out.exists() and not out.is_dir():
        raise RegistryError(
            f"{out} exists and is not a directory; choose a directory for the bundle"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / manifest_name).is_file():
        raise RegistryError(
            f"refusing to replace {out}: it holds files and is not a bundle; "
            "choose a new or empty directory"
        )


def _fetch_model(repo: Path, v: Version, md5: str, dest: Path) -> None:
    """Copy the model of `v` out of the DVC cache, or the default remote when the cache lacks it."""
    from dvc.api import DVCFileSystem  # heavy import, needed only here
    from dvc.exceptions import DvcException

    where = f"{paths.MODEL} of {v.tag} (md5 {md5})"
    try:
        remote = _workspace_remote(repo)
        fs = DVCFileSystem(str(repo.resolve()), rev=v.commit, config=remote or None)
        fs.get_file(paths.MODEL.as_posix(), str(dest))
    except FileNotFoundError:
        name = (remote.get("core") or {}).get("remote")
        searched = f"nor in DVC remote '{name}'" if name else "and no DVC remote is configured"
        raise RegistryError(
            f"{where} is not in the local DVC cache {searched}; run `dvc push` where it was "
            f"trained, or reproduce it with `git checkout {v.tag} && dvc repro && dvc push`"
        ) from None
    except DvcException as exc:
        raise RegistryError(f"cannot fetch {where} from DVC storage: {exc}") from None


def _workspace_remote(repo: Path) -> dict[str, Any]:
    """The working tree's default DVC remote, as config for reading an older commit: the remote may
    have been added or moved since that commit, and the current one is where its model lives now."""
    from dvc.config import Config

    config = Config(dvc_dir=str(repo / ".dvc"))
    name = config["core"].get("remote")
    if not name or name not in config["remote"]:
        return {}
    return {"core": {"remote": name}, "remote": {name: dict(config["remote"][name])}}
