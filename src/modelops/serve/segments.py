"""A log directory in; segment files out (the prediction log's and the feedback log's): created and
locked by their writer, finished (fsync, rename), cut back after a failed write, and recovered once
their writer is gone.

A segment being written is `<prefix><UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl.open` (`predictions-`
or `feedback-`, as `modelops.logline` names the kinds); finishing it renames it to `….jsonl`, which
is all a reader takes. Its writer holds an exclusive `flock` on it
for as long as it writes, so ownership never depends on timing: a segment whose lock can be taken
has no writer left (the process was killed, or the machine restarted), and any writer sharing the
directory may finish it, cutting a torn last line. The lock is taken on a hidden name before the
segment gets its visible one, so no recovery can see a segment before its writer holds it.

flock works between processes on one machine and local filesystems (ext4, xfs, overlayfs, tmpfs);
on NFS it depends on the server. Give each machine's replicas their own directory on shared storage.

Everything here is blocking file I/O, run by the log's worker thread (or at startup).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from modelops.files import fsync_path
from modelops.logline import OPEN_SUFFIX, SEGMENT_SUFFIX, segment_name
from modelops.serve import logs

PROBE_BYTES = 1 << 16  # what a probe writes to learn that the directory takes data again
_CHUNK = 1 << 20
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC

log = logging.getLogger(logs.SERVER)


def create(directory: Path, prefix: str, now: float, seq: int) -> tuple[int, Path, int]:
    """A new locked segment of the kind `prefix` names: (fd, path, the sequence number used). Names
    never repeat: a restart in the same second with the same pid (pid 1 in a container) takes the
    next free sequence number."""
    pid = os.getpid()
    while True:
        seq += 1
        final = directory / segment_name(prefix, now, pid, seq)
        path = final.with_name(final.name + OPEN_SUFFIX)
        if final.exists() or path.exists():
            continue
        hidden = directory / f".{path.name}.new"
        try:
            fd = os.open(hidden, _FLAGS, 0o644)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        return fd, path, seq


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def finish(fd: int, path: Path) -> Path:
    """Flush the segment to disk and give it its final name; the lock goes with the descriptor."""
    try:
        os.fsync(fd)
        final = final_name(path)
        os.rename(path, final)
        fsync_path(path.parent)
        return final
    finally:
        os.close(fd)


def abandon(fd: int, path: Path, keep: int) -> Path | None:
    """After a failed write: cut the segment back to the `keep` bytes that were answered for, and
    finish it if it still exists. Returns its final path, or None when it is gone."""
    try:
        try:
            os.ftruncate(fd, keep)
        except OSError as exc:
            _report("cannot cut a prediction log segment back", path, exc)
        if os.fstat(fd).st_nlink == 0:
            return None  # deleted under the writer: nothing left to finish
        return finish(os.dup(fd), path)
    except OSError as exc:
        _report("cannot finish a prediction log segment", path, exc)
        return None
    finally:
        os.close(fd)


def recover(directory: Path, prefix: str) -> list[tuple[Path, int, int]]:
    """Finish every segment of the kind `prefix` names that no writer holds: (final path, rows
    kept, torn bytes dropped) each."""
    recovered = []
    for path in sorted(directory.glob(f"{prefix}*{SEGMENT_SUFFIX}{OPEN_SUFFIX}")):
        try:
            done = _recover_one(path)
        except OSError as exc:
            # A stale segment must never stop the server from logging.
            _report("cannot recover a prediction log segment", path, exc)
            continue
        if done is not None:
            recovered.append(done)
    return recovered


def _recover_one(path: Path) -> tuple[Path, int, int] | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # finished by its writer, or by another server, meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None  # its writer is alive
            raise
        if not _same_file(fd, path):
            return None  # renamed while we waited for the lock
        rows, dropped = _cut_torn_line(fd)
        if rows == 0:
            path.unlink()
            fsync_path(path.parent)
            return None
        final = final_name(path)
        if final.exists():
            raise FileExistsError(f"{final}: exists; {path.name} left as it is")
        os.rename(path, final)
        fsync_path(path.parent)
        return final, rows, dropped
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _cut_torn_line(fd: int) -> tuple[int, int]:
    """Truncate after the last newline; (whole lines kept, bytes dropped)."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:  # find the last newline, reading backwards a chunk at a time
        start = max(0, end - _CHUNK)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        end = start
    rows = sum(os.pread(fd, min(_CHUNK, end - at), at).count(b"\n") for at in range(0, end, _CHUNK))
    if end < size:
        os.ftruncate(fd, end)
        os.fsync(fd)
    return rows, size - end


def probe(directory: Path) -> None:
    """Raise OSError unless the directory takes a write of PROBE_BYTES (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def final_name(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(OPEN_SUFFIX))


def _report(message: str, path: Path, exc: OSError) -> None:
    logs.event(log, logging.ERROR, message, segment=str(path), error=str(exc))
