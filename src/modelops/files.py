"""Whole-file writes that never leave a half-written output, and the file hashes lineage records."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


def write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path | str, obj: Any) -> None:
    """Stable, human-readable JSON (sorted keys are not used: insertion order is meaningful)."""
    write_bytes(target, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_with(target: Path | str, writer: Callable[[Path], object]) -> None:
    """Call `writer(tmp_path)` and move the result into place atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)


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
