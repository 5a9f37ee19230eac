"""A registry ref in, a verified bundle directory out; a bundle directory in, its verified manifest,
card and file digests out: what the server and the container load.

Layout of a bundle (written by `modelops registry bundle`):

    bundle.json     manifest: name, version, commit, and the sha256 of every other file
    model.joblib    the fitted Pipeline
    card.json       the model card (lineage, schema, reference predictions)
    profile.json    the frozen reference feature profile
    metrics.json    the evaluation metrics of this version

`verify` checks the manifest against a digest from outside the bundle (the registry, or the
operator), then every file against the manifest, before anything unpickles the model; `read_model`
hashes the model's bytes once, the very bytes that get unpickled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from modelops import files, paths
from modelops.card import Card, load_card
from modelops.errors import ArtifactIntegrityError, RegistryError
from modelops.registry import git
from modelops.registry.lineage import model_md5, parse_lock, read, read_card
from modelops.registry.tags import resolve

MANIFEST = "bundle.json"
MODEL = "model.joblib"
CARD = "card.json"
PROFILE = "profile.json"
METRICS = "metrics.json"
CONTENTS = (MODEL, CARD, PROFILE, METRICS)


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    version: str
    commit: str
    files: dict[str, str]  # file name -> sha256
    stages: list[str] = msgspec.field(default_factory=list)  # stages the version held when bundled


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    """A bundle that passed `verify`: its manifest and card, and the manifest digest they hang on."""

    manifest: Manifest
    card: Card
    manifest_sha256: str  # the root of trust the manifest matched

    @property
    def model_sha256(self) -> str:
        return self.manifest.files[MODEL]


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


def manifest_sha256(directory: Path | str) -> str:
    """The digest that vouches for a whole bundle: the sha256 of its manifest, which records the
    sha256 of every other file."""
    return files.sha256(Path(directory) / MANIFEST)


def verify(directory: Path | str, trusted: str) -> Verified:
    """Check a bundle against `trusted`, the sha256 of its manifest as a root of trust outside the
    bundle gave it (the registry's tag and dvc.lock, or the operator): the manifest must hash to
    it, every file but the model must match the manifest, and the card must name the model the
    manifest names. The model itself is hashed where it is read to be unpickled (`read_model`)."""
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactIntegrityError(
            f"{path}: bundle manifest not found; not a bundle directory"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != trusted:
        raise ArtifactIntegrityError(
            f"{path}: sha256 {digest[:16]}… is not the trusted {trusted[:16]}…; this is not the "
            "bundle the registry (or --bundle-sha256) vouches for, and nothing in it is loaded"
        )
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ArtifactIntegrityError(f"{path}: invalid bundle manifest: {exc}") from None
    for name in CONTENTS:
        if name != MODEL:
            _check_file(directory / name, manifest.files.get(name))
    card = load_card(directory / CARD)
    if card.artifact.sha256 != manifest.files.get(MODEL) or card.name != manifest.name:
        raise ArtifactIntegrityError(
            f"{directory}: the manifest and the card describe different models; "
            "re-materialise the bundle from the registry"
        )
    return Verified(manifest=manifest, card=card, manifest_sha256=digest)


def read_model(directory: Path | str, verified: Verified) -> bytes:
    """The model file's bytes, only if they hash to what the verified manifest and card record:
    hashed once, and the very bytes that get unpickled, so the file cannot change in between."""
    path = Path(directory) / MODEL
    if not path.is_file():
        raise ArtifactIntegrityError(f"{path}: missing from the bundle")
    data = path.read_bytes()
    _compare(path, hashlib.sha256(data).hexdigest(), verified.model_sha256)
    return data


def _check_file(path: Path, expected: str | None) -> None:
    if not path.is_file():
        raise ArtifactIntegrityError(f"{path}: missing from the bundle")
    _compare(path, files.sha256(path), expected)


def _compare(path: Path, actual: str, expected: str | None) -> None:
    if actual != expected:
        raise ArtifactIntegrityError(
            f"{path}: sha256 {actual[:16]}… does not match the manifest's "
            f"{(expected or 'nothing')[:16]}…; re-materialise the bundle from the registry"
        )


# ------------------------------------------------------------------------------------ materialise


class Pinned(msgspec.Struct, frozen=True):
    """A version by name, number and commit: what a bundle is made of."""

    name: str
    version: str
    commit: str
    stages: list[str] = msgspec.field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


def materialise(ref: str, out: Path, repo: Path = Path(".")) -> Manifest:
    """Write the bundle of the version `ref` names into `out`, verified against its commit.

    model.joblib comes from the DVC cache or remote; its md5 must equal the one in the tagged
    commit's dvc.lock and its sha256 the one in the card. `out` is replaced only when all is well.
    """
    repo = Path(repo)
    v = resolve(read(repo), ref)
    if v.deregistered:
        raise RegistryError(f"{v.tag} is deregistered; bundle a registered version instead")
    return materialise_pinned(Pinned(v.name, v.version, v.commit, list(v.stages)), out, repo)


def materialise_pinned(v: Pinned, out: Path, repo: Path = Path(".")) -> Manifest:
    """`materialise` for a version already resolved to its commit, which needs no tag: a temporary
    DVC experiment's copy of the repository has the commits but not the tags."""
    repo, out = Path(repo), Path(out)
    committed = _committed_files(repo, v)
    lock_md5 = model_md5(parse_lock(committed.pop(paths.DVC_LOCK.name), v.tag), v.tag)
    card, unreadable = read_card(committed[CARD])
    if card is None:
        raise RegistryError(
            f"{v.tag}: {paths.CARD} in commit {v.commit[:8]} is not a model card this modelops "
            f"reads ({unreadable}); it cannot be bundled"
        )
    if card.artifact.md5 != lock_md5:
        raise ArtifactIntegrityError(
            f"{v.tag}: the card records model md5 {card.artifact.md5} but dvc.lock records "
            f"{lock_md5}; the commit is inconsistent and cannot be bundled"
        )
    _check_bundle_target(out)

    with _replacing(out) as tmp:
        for name, blob in committed.items():
            (tmp / name).write_bytes(blob)
        _fetch_model(repo, v, lock_md5, tmp / MODEL)
        manifest = write_manifest(tmp, v.name, v.version, v.commit, list(v.stages))
        # The server's own check (the model against the card), before publishing.
        read_model(tmp, verify(tmp, manifest_sha256(tmp)))
        # Temporary files are private (0600/0700); a bundle is read by a server or container user.
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
    return manifest


def _committed_files(repo: Path, v: Pinned) -> dict[str, bytes]:
    """Bundle file name -> bytes at the version's commit (and dvc.lock), all of them or an error."""
    wanted = {
        CARD: paths.CARD,
        PROFILE: paths.PROFILE,
        METRICS: paths.METRICS,
        paths.DVC_LOCK.name: paths.DVC_LOCK,
    }
    blobs = git.read_files(repo, v.commit, list(wanted.values()))
    if not any(blobs) and not git.has_commit(repo, v.commit):
        raise RegistryError(
            f"{v.tag}: commit {v.commit[:8]} is not in this repository; fetch it "
            "(`git fetch --tags`) and run again"
        )
    found: dict[str, bytes] = {}
    for (name, path), blob in zip(wanted.items(), blobs, strict=True):
        if blob is None:
            raise RegistryError(
                f"{v.tag}: {path} is not in commit {v.commit[:8]}; it cannot be bundled"
            )
        found[name] = blob
    return found


def _check_bundle_target(out: Path) -> None:
    """Refuse `out` unless replacing it deletes nothing this command did not write: it is absent,
    an empty directory, or one of our bundles (see `_not_our_bundle`)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RegistryError(
            f"refusing to write the bundle into {out}: it exists and is not a directory; "
            "choose a new or empty directory"
        )
    why = _not_our_bundle(out) if out.is_dir() else None
    if why is not None:
        raise RegistryError(
            f"refusing to write the bundle into {out}: {why}. Nothing was changed; choose a new "
            "or empty directory, or move those files away"
        )


def _not_our_bundle(directory: Path) -> str | None:
    """Why replacing `directory` could delete something not written by `materialise`; None when it
    is empty or one of our bundles: bundle.json parses as a Manifest that names only bundle files,
    and every other entry is a regular file (not a link) that the manifest names."""
    entries = sorted(p.name for p in directory.iterdir())
    if not entries:
        return None
    shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
    if MANIFEST not in entries:
        return f"it holds files ({shown}) and no {MANIFEST}, so it is not a bundle"
    try:
        manifest = read_manifest(directory)
    except ArtifactIntegrityError as exc:
        return f"{MANIFEST} there is not a bundle manifest ({exc})"
    foreign = sorted(set(manifest.files) - set(CONTENTS))
    if foreign:
        return f"its {MANIFEST} lists files a bundle never holds ({', '.join(foreign)})"
    ours = {MANIFEST, *manifest.files}
    extra = [
        e
        for e in entries
        if e not in ours or (directory / e).is_symlink() or not (directory / e).is_file()
    ]
    if extra:
        return f"it holds {', '.join(extra)}, not written by `modelops registry bundle`"
    return None


@contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """Yield an empty directory to fill; on success it takes the place of `out`, and the previous
    bundle is removed only after that. A failure before leaves `out` exactly as it was.

    The staging directory is private to this call (a fresh hidden sibling of `out`, on the same
    file system); the old bundle is moved into it, never to a fixed name that a user's directory
    could hold. Between the two renames `out` is briefly absent; a crash there leaves the old
    bundle in the staging directory.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        new = staging / "new"
        new.mkdir()
        yield new
        _check_bundle_target(out)  # again: nothing of a user's may have arrived meanwhile
        if out.exists():
            os.rename(out, staging / "old")
        os.rename(new, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_model(repo: Path, v: Pinned, md5: str, dest: Path) -> None:
    """Copy the model of `v` out of the DVC cache, or the default remote when the cache lacks it, and
    refuse it unless its md5 is the one the commit's dvc.lock records."""
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
    got = files.md5(dest)
    if got != md5:
        raise ArtifactIntegrityError(
            f"{v.tag}: {paths.MODEL} fetched from DVC storage has md5 {got}, but dvc.lock at "
            f"{v.commit[:8]} records {md5}; the stored copy is corrupt. Delete "
            f"files/md5/{md5[:2]}/{md5[2:]} from the DVC cache (`dvc cache dir` "
            "shows where) and run `dvc pull`, or reproduce it at that commit with `dvc repro`"
        )


def _workspace_remote(repo: Path) -> dict[str, Any]:
    """The working tree's default DVC remote, as config for reading an older commit: the remote may
    have been added or moved since that commit, and the current one is where its model lives now."""
    from dvc.config import Config

    config = Config(dvc_dir=str(repo / ".dvc"))
    name = config["core"].get("remote")
    if not name or name not in config["remote"]:
        return {}
    return {"core": {"remote": name}, "remote": {name: dict(config["remote"][name])}}
