"""Tag names and tag records in, registry state out: GTO's tag grammar, versions and stages (pure).

A version is `<name>@vX.Y.Z`, withdrawn by `<name>@vX.Y.Z!#N`; a stage is assigned by
`<name>#<stage>#N` and unassigned by `<name>#<stage>!#N`. Nothing here runs git or reads files:
`build_registry` interprets tag records the way GTO's default view does, `resolve` turns what a user
types into a version, `next_version` decides a registration's version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from modelops.errors import RegistryError

Action = Literal["register", "deregister", "assign", "unassign"]
Bump = Literal["major", "minor", "patch"]
BUMPS: tuple[Bump, ...] = ("major", "minor", "patch")
LATEST = "latest"

# GTO's grammar (gto.constants), spelled here so that reading the registry does not import GTO
# (a third of a second at every `modelops` start); a unit test holds these equal to GTO's own.
_NAME = r"[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?"
_SEMVER = (
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_FULLNAME_IN_TAG = f"(?P<dirname>[a-zA-Z0-9-_./]+=)?(?P<name>{_NAME})"
NAME_RE = re.compile(f"^{_NAME}$")
# The stage names modelops writes: GTO's name rule in lower case. GTO also accepts upper case, and
# then `PROD` and `prod` are two stages (whose refs collide on a case-insensitive file system).
STAGE_RE = re.compile(f"^{_NAME.replace('a-zA-Z', 'a-z')}$")
TAG_RE = re.compile(
    f"^(?P<artifact>{_FULLNAME_IN_TAG})"
    f"(((#(?P<stage>{_NAME})|@(?P<version>v{_SEMVER}))(?P<cancel>!?))"
    "|@((?P<deprecated>deprecated)|(?P<created>created)))"
    "(#(?P<counter>[0-9]+))?$"
)
VERSION_RE = re.compile(f"^v{_SEMVER}$")

# Marks the tags a rollback writes, so a later rollback steps further back instead of undoing it.
OPERATION_TRAILER = "Modelops-Operation"
_ROLLBACK_RE = re.compile(rf"^{OPERATION_TRAILER}:\s*rollback\s*$", re.MULTILINE)
# Why a version the champion gate refused was registered anyway (`register --force --reason`).
OVERRIDE_TRAILER = "Modelops-Gate-Override"
_OVERRIDE_RE = re.compile(rf"^{OVERRIDE_TRAILER}:[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)

# (names a version, cancels) -> what the tag records
_ACTIONS: dict[tuple[bool, bool], Action] = {
    (True, False): "register",
    (True, True): "deregister",
    (False, False): "assign",
    (False, True): "unassign",
}


class Tag(msgspec.Struct, frozen=True, kw_only=True):
    """A registry tag's name, parsed: what happened to which version or stage."""

    artifact: str
    action: Action
    version: str | None = None  # register, deregister: `vX.Y.Z`
    stage: str | None = None  # assign, unassign
    counter: int | None = None  # GTO's `#N`, growing with every tag of the artifact


class TagRecord(msgspec.Struct, frozen=True):
    """An annotated tag as git stores it: name, peeled commit, tagger time and identity, message."""

    name: str
    commit: str
    time: int
    author: str
    message: str


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

    @property
    def newest_time(self) -> int:
        """Tagger time of the newest event: a new tag must be stamped after it."""
        return max((e.time for e in self.events), default=0)

    @property
    def next_counter(self) -> int:
        return max((e.counter or 0 for e in self.events), default=0) + 1


# ------------------------------------------------------------------------------------ grammar


def parse_tag(text: str) -> Tag | None:
    """The registry event a tag name records; None for any other tag (another tool's, or GTO's
    `@created`/`@deprecated` markers, which are not events of a version or stage)."""
    m = TAG_RE.match(text)
    if m is None or not (m["version"] or m["stage"]):
        return None
    is_version = bool(m["version"])
    return Tag(
        artifact=m["artifact"],
        action=_ACTIONS[(is_version, m["cancel"] == "!")],
        version=m["version"] if is_version else None,
        stage=None if is_version else m["stage"],
        counter=int(m["counter"]) if m["counter"] else None,
    )


def format_tag(tag: Tag) -> str:
    """The tag name recording `tag`; refused unless GTO would read it back as the same event."""
    names_version = tag.action in ("register", "deregister")
    subject = f"@{tag.version}" if names_version else f"#{tag.stage}"
    cancel = "!" if tag.action in ("deregister", "unassign") else ""
    counter = "" if tag.counter is None else f"#{tag.counter}"
    text = f"{tag.artifact}{subject}{cancel}{counter}"
    if parse_tag(text) != tag:
        raise RegistryError(f"'{text}' is not a tag in GTO's grammar; nothing was written")
    return text


def check_stage_name(stage: str, name: str) -> None:
    """Refuse a stage name modelops does not write: outside GTO's name rule, in upper case, or
    `latest` (a ref that means the greatest version)."""
    if NAME_RE.match(stage) and not STAGE_RE.match(stage):
        raise RegistryError(
            f"'{stage}' is not a valid stage name: stage names are lower case (GTO's name rule, "
            f"lower case only), so that '{stage}' and '{stage.lower()}' can never be two stages; "
            f"use '{stage.lower()}'"
        )
    if not STAGE_RE.match(stage) or stage == LATEST:
        raise RegistryError(
            f"'{stage}' is not a valid stage name: use lower-case letters, digits, '-', '_' or '/', "
            "starting and ending with a letter or digit (e.g. prod, staging), and not 'latest' "
            "or a version"
        )
    format_tag(Tag(artifact=name, action="assign", stage=stage, counter=1))


def case_clashes(registry: Registry) -> list[list[str]]:
    """Groups of stage names in the registry's tags that differ only in case (written by another
    tool): GTO and modelops read each as a stage of its own."""
    spellings: dict[str, set[str]] = {}
    for e in registry.events:
        if e.stage is not None:
            spellings.setdefault(e.stage.lower(), set()).add(e.stage)
    return [sorted(names) for _, names in sorted(spellings.items()) if len(names) > 1]


def is_rollback(event: Event) -> bool:
    return bool(_ROLLBACK_RE.search(event.message))


def rollback_trailer(note: str, operation: Literal["promote", "rollback"]) -> str:
    """A stage tag's message: the note, then the trailer `is_rollback` reads."""
    return f"{note}\n\n{OPERATION_TRAILER}: {operation}"


def override_trailer(reason: str) -> str:
    """The trailer recording why the gate was overridden: one line, whatever the reason held."""
    line = " ".join(reason.split())
    if not line:
        raise RegistryError("--reason must say why the gate is overridden; it is kept in the tag")
    return f"{OVERRIDE_TRAILER}: {line}"


def override_reason(message: str) -> str | None:
    found = _OVERRIDE_RE.findall(message)
    return str(found[-1]) if found else None


def format_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# ------------------------------------------------------------------------------------ versions


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    m = VERSION_RE.match(version)
    if m is None:
        return (-1, -1, -1, 0, version)
    pre = m["prerelease"] or ""
    # A pre-release sorts before its release.
    return (int(m["major"]), int(m["minor"]), int(m["patch"]), 0 if pre else 1, pre)


def next_version(
    greatest: Version | None,
    changes: Sequence[str],
    bump: Bump | None = None,
    version: str | None = None,
) -> str:
    """The version a registration gets. Changed inputs (`changes`) demand a new major."""
    major, minor, patch = semver_key(greatest.version)[:3] if greatest else (0, 0, 0)
    if version is not None:
        m = VERSION_RE.match(version)
        if m is None or m["prerelease"] is not None or m["buildmetadata"] is not None:
            raise RegistryError(
                f"version '{version}' is not of the form vMAJOR.MINOR.PATCH (e.g. v1.2.0)"
            )
        if changes and greatest is not None and int(m["major"]) <= major:
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


# ------------------------------------------------------------------------------------ registry


def build_registry(name: str, records: Iterable[TagRecord]) -> Registry:
    """Interpret GTO-grammar tags of `name` the way GTO's default view does."""
    parsed = sorted(
        (e for e in (_event(name, r) for r in records) if e is not None), key=_event_order
    )
    registered = {e.commit: e.version for e in parsed if e.action == "register"}
    events = [
        msgspec.structs.replace(e, version=registered.get(e.commit)) if e.stage else e
        for e in parsed
    ]
    history: dict[str, list[Event]] = {}
    for e in events:
        if e.stage is None and e.version is not None:
            history.setdefault(e.version, []).append(e)
    deregistered = {v for v, evs in history.items() if evs[-1].action == "deregister"}
    stages = _stage_holders(events, deregistered)
    versions = [
        _version(name, version, evs, version in deregistered, stages)
        for version, evs in history.items()
        if any(e.action == "register" for e in evs)  # not deregistered without a registration
    ]
    versions.sort(key=lambda v: semver_key(v.version), reverse=True)
    return Registry(name=name, versions=versions, stages=stages, events=events)


def _event(name: str, record: TagRecord) -> Event | None:
    tag = parse_tag(record.name)
    if tag is None or tag.artifact != name:
        return None
    return Event(
        tag=record.name,
        action=tag.action,
        commit=record.commit,
        time=record.time,
        author=record.author,
        message=record.message,
        version=tag.version,
        stage=tag.stage,
        counter=tag.counter,
    )


def _event_order(e: Event) -> tuple[int, int, str]:
    return (e.time, e.counter or 0, e.tag)


def _stage_holders(events: Sequence[Event], deregistered: set[str]) -> dict[str, str]:
    """stage -> version holding it. A stage is active on a version while its latest assign/unassign
    there is an assign; if tags written by other tools leave several active, the latest assignment
    wins (GTO's default). A deregistered version holds nothing."""
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
    return {stage: e.version for stage, e in sorted(holders.items()) if e.version}


def _version(
    name: str, version: str, events: Sequence[Event], deregistered: bool, stages: dict[str, str]
) -> Version:
    registration = next(e for e in reversed(events) if e.action == "register")
    return Version(
        name=name,
        version=version,
        commit=registration.commit,
        time=registration.time,
        author=registration.author,
        message=registration.message,
        deregistered=deregistered,
        stages=[s for s, v in stages.items() if v == version],
    )


def resolve(registry: Registry, ref: str) -> Version:
    """A version from `v1.2.0`, `1.2.0`, `<name>@v1.2.0`, `latest`, a stage name or `<name>#<stage>`."""
    if ref == LATEST:
        active = [v for v in registry.versions if not v.deregistered]
        if not active:
            raise RegistryError(
                f"{registry.name} has no registered version yet; run `modelops registry register`"
            )
        return active[0]
    version, stage = _split_ref(registry.name, ref)
    if version is not None:
        return _by_version(registry, version)
    return _by_stage(registry, stage)


def _split_ref(name: str, ref: str) -> tuple[str | None, str]:
    """(version, None-or-'') for a version ref, (None, stage) for a stage ref."""
    if ref.startswith(f"{name}@"):
        return ref.removeprefix(f"{name}@"), ""
    if ref.startswith(f"{name}#"):
        return None, ref.removeprefix(f"{name}#")
    if "@" in ref or "#" in ref:
        raise RegistryError(
            f"'{ref}' names another model; this registry holds '{name}' (params base.model_name)"
        )
    if VERSION_RE.match(ref) or VERSION_RE.match(f"v{ref}"):
        return (ref if ref.startswith("v") else f"v{ref}"), ""
    return None, ref


def _by_version(registry: Registry, version: str) -> Version:
    for v in registry.versions:
        if v.version == version:
            return v
    known = ", ".join(v.version for v in registry.versions) or "none yet"
    raise RegistryError(
        f"{registry.name} has no version '{version}' (known: {known}); see `modelops registry list`"
    )


def _by_stage(registry: Registry, stage: str) -> Version:
    holder = registry.stages.get(stage)
    if holder is None:
        held = ", ".join(f"{s} ({v})" for s, v in registry.stages.items()) or "none"
        if stage != stage.lower() and stage.lower() in registry.stages:
            hint = f"stage names are lower case: did you mean '{stage.lower()}'?"
        else:
            hint = f"assign one with `modelops registry promote <version> --stage {stage}`"
        raise RegistryError(
            f"no version of {registry.name} holds stage '{stage}' (stages held now: {held}); "
            + hint
        )
    return _by_version(registry, holder)


def holder_stack(events: Sequence[Event], stage: str) -> list[str]:
    """The versions that held `stage`, oldest first, with rolled-back tenures removed."""
    stack: list[str] = []
    for e in events:
        if e.stage != stage or e.action != "assign" or e.version is None:
            continue
        if is_rollback(e) and stack:
            stack.pop()
        if not stack or stack[-1] != e.version:
            stack.append(e.version)
    return stack
