"""A repository path in, git's answers out: HEAD, annotated tags, files at a commit; and tags written.

Everything a version is made of is read from its commit with plumbing, never by checking out.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from modelops.errors import RegistryError
from modelops.registry.tags import TagRecord

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


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RegistryError(f"`git {' '.join(args[:2])}` failed in {repo}: {err}")
    return proc.stdout


def head(repo: Path) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
    except RegistryError:
        raise RegistryError(
            f"{repo} has no commit to register (or is not a git repository)"
        ) from None


def annotated_tags(repo: Path) -> list[TagRecord]:
    out = git(repo, "for-each-ref", f"--format={_FOR_EACH_REF}", "refs/tags").decode(
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


def read_files(repo: Path, commit: str, paths: Sequence[Path]) -> list[bytes | None]:
    """Contents of `paths` at `commit`; None where a path is not in it."""
    return read_blobs(repo, [f"{commit}:{p.as_posix()}" for p in paths])


def read_blobs(repo: Path, specs: Sequence[str]) -> list[bytes | None]:
    """Contents of `<commit>:<path>` specs through one `git cat-file --batch`; None where missing."""
    if not specs:
        return []
    out = git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode())
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


def require_clean_tree(repo: Path) -> None:
    status = git(repo, "status", "--porcelain", "--untracked-files=all").decode().splitlines()
    if status:
        shown = "; ".join(line.strip() for line in status[:5]) + ("; …" if len(status) > 5 else "")
        raise RegistryError(
            f"the working tree is not clean ({shown}); a version must be exactly a commit, "
            "so commit or stash these changes first"
        )


def check_ref_format(tag: str) -> None:
    """Refuse a tag name git would not store."""
    proc = subprocess.run(
        ["git", "check-ref-format", f"refs/tags/{tag}"], capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RegistryError(f"'{tag}' is not a valid git tag name; nothing was written")


def has_commit(repo: Path, commit: str) -> bool:
    proc = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def ref_exists(repo: Path, tag: str) -> bool:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def write_tags(repo: Path, writes: Sequence[tuple[str, str, str]], after: int) -> None:
    """Create annotated tags (name, commit, message) all at once or not at all, stamped strictly
    after the unix time `after` (the artifact's newest tag).

    GTO and DVC order registry events by tagger time in whole seconds, so two tags in the same
    second could be read in the wrong order. Tag objects are written first (unreferenced until the
    end); one `git update-ref --stdin` transaction then creates every ref or, if any exists, none.
    """
    ident = git(repo, "var", "GIT_COMMITTER_IDENT").decode().strip()
    who, _, tz = ident.rsplit(" ", 2)
    stamp = max(int(time.time()), after + 1)
    lines = []
    for i, (tag, commit, message) in enumerate(writes):
        body = (
            f"object {commit}\ntype commit\ntag {tag}\ntagger {who} {stamp + i} {tz}\n\n"
            f"{message.rstrip()}\n"
        )
        oid = git(repo, "mktag", stdin=body.encode()).decode().strip()
        lines.append(f"create refs/tags/{tag} {oid}\n")
    try:
        git(repo, "update-ref", "--stdin", stdin="".join(lines).encode())
    except RegistryError as exc:
        raise RegistryError(f"no tag was written: {exc}; run again") from None
