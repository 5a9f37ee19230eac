"""Whole-file and whole-stage writes that never leave a half-written output; the hashes lineage records.

A stage writes every output inside one `outputs(...)` block:

    with files.outputs(paths.CARD, paths.MODEL) as out:
        joblib.dump(pipeline, out.path(paths.MODEL))
        files.write_json(out.path(paths.CARD), card)

`out.path(target)` (a file) and `out.dir(target)` (a directory) are staged beside the target, in
a hidden `.<name>.~XXXX.tmp/` directory of the same file system, under the target's own name. Until
the block ends, nothing at the outputs' own paths changes. Then the commit: the staged files are
flushed to disk (fsync), the previous outputs are moved aside last-listed first, the new ones are
renamed into place first-listed first, the directories are flushed, and the staging is removed.

What a crash (an exception, or the process killed) leaves:
- before the commit, which is all of the stage's work: the previous outputs exactly as they were;
- a directory output is renamed as a whole, so it is never half old and half new, never partial;
- inside the commit, a window of a few renames: the outputs present are always the first ones in
  the order listed, all from the same run (old or new), never a mix. A stage therefore lists first
  the file that vouches for the others (train: the card before its model), so a model is never in
  place without its own card. Readers check that anyway (the card's sha256 of the model).
A killed run may leave its hidden staging directory; nothing reads it, and the next commit of the
same output removes it. One writer per output at a time (DVC's repository lock sees to that).

DVC's view stays consistent: `dvc repro` deletes a stage's outputs before running it and records
them in dvc.lock only after the command succeeded, so a failed or killed stage leaves dvc.lock as it
was, and any output that is missing or differs from dvc.lock makes the stage run again.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); an output gets the permissions open() would give it.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; it replaces `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = target.with_name(f".{target.name}.old")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the directory private (0700)
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Outputs:
    """The staged paths of one stage's outputs; see the module docstring."""

    def __init__(self, targets: list[Path]) -> None:
        self.targets = targets
        self._staging: dict[Path, Path] = {}

    def _staged(self, target: Path | str) -> Path:
        target = Path(target)
        if target not in self.targets:
            raise KeyError(f"{target} is not among the declared outputs {self.targets}")
        if target not in self._staging:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._staging[target] = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.~", suffix=".tmp", dir=target.parent)
            )
        return self._staging[target] / target.name

    def path(self, target: Path | str) -> Path:
        """Where to write the file `target`: same name, in its staging directory."""
        return self._staged(target)

    def dir(self, target: Path | str) -> Path:
        """The (created, empty) directory to fill in place of the directory `target`."""
        staged = self._staged(target)
        staged.mkdir(exist_ok=True)
        return staged

    def commit(self) -> None:
        unwritten = [t for t in self.targets if not os.path.lexists(self._staged(t))]
        if unwritten:
            raise FileNotFoundError(f"outputs not written: {', '.join(map(str, unwritten))}")
        for target in self.targets:
            _fsync_tree(self._staged(target))
        for target in reversed(self.targets):
            if os.path.lexists(target):
                os.rename(target, self._staging[target] / ".previous")
        for target in self.targets:
            os.rename(self._staged(target), target)
        for parent in dict.fromkeys(t.parent for t in self.targets):
            fsync_path(parent)
        for target in self.targets:  # what killed runs left
            for stale in target.parent.glob(f".{glob.escape(target.name)}.~*.tmp"):
                if stale != self._staging[target]:
                    shutil.rmtree(stale, ignore_errors=True)

    def discard(self) -> None:
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def outputs(*targets: Path | str) -> Iterator[Outputs]:
    """Stage a stage's outputs; they replace the previous ones only if the block succeeds."""
    staged = Outputs([Path(t) for t in targets])
    try:
        yield staged
        staged.commit()
    finally:
        staged.discard()


def fsync_path(path: Path) -> None:
    """Flush a file or a directory (its entries: names created, renamed or removed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """A renamed name must never point at data still in the page cache when the machine stops."""
    if path.is_dir():
        for root, _, names in os.walk(path):
            for name in names:
                fsync_path(Path(root) / name)
            fsync_path(Path(root))
    else:
        fsync_path(path)


def write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path | str, obj: Any) -> None:
    """Stable, human-readable JSON (sorted keys are not used: insertion order is meaningful)."""
    write_bytes(target, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def safe_name(name: str) -> str:
    """`name` as a file name: every character but letters, digits, `_`, `.` and `-` becomes `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_bytes())


def _digest(path: Path | str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def md5(path: Path | str) -> str:
    """MD5 of a file's bytes: the hash DVC 3 records for a file in dvc.lock."""
    return _digest(path, "md5")


def sha256(path: Path | str) -> str:
    return _digest(path, "sha256")
