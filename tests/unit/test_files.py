"""Atomic outputs: all or nothing, and with the permissions a normal write would give them."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import pytest

from modelops import files


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_directories_get_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.write_json(tmp_path / "out.json", {"a": 1})
        with files.atomic_dir(tmp_path / "plots") as d:
            files.write_json(d / "x.json", [])
    finally:
        os.umask(old)
    assert mode(tmp_path / "out.json") == 0o644
    assert mode(tmp_path / "plots") == 0o755


def test_a_failed_write_leaves_the_previous_output_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    files.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert files.read_json(target) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_directory_write_keeps_the_old_directory(tmp_path: Path) -> None:
    with files.atomic_dir(tmp_path / "plots") as d:
        files.write_json(d / "old.json", [1])
    with pytest.raises(RuntimeError), files.atomic_dir(tmp_path / "plots") as d:
        files.write_json(d / "new.json", [2])
        raise RuntimeError("interrupted")
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["old.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]


def test_file_hashes_are_the_ones_dvc_and_sha256sum_give(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"modelops\n")
    assert files.md5(path) == "e6eb10c6985cbeeb10666cd7fe36436a"
    assert files.sha256(path) == "d6d40c4ee3925bb7ba7f55dec7f329ea616714f56fa817ff67f8c0f9d3d09011"


def write_outputs(root: Path, version: str) -> None:
    """A stage's two outputs: a card-like file and a plots directory, both stamped `version`."""
    with files.outputs(root / "card.json", root / "plots") as out:
        files.write_json(out.path(root / "card.json"), {"version": version})
        plots = out.dir(root / "plots")
        for name in ("a", "b"):
            files.write_json(plots / f"{name}.json", {"version": version})


def versions(root: Path) -> dict[str, str]:
    """Which version each present output is; every file of a directory must agree."""
    found: dict[str, str] = {}
    if (root / "card.json").exists():
        found["card.json"] = files.read_json(root / "card.json")["version"]
    if (root / "plots").exists():
        inside = {files.read_json(p)["version"] for p in (root / "plots").iterdir()}
        assert len(inside) == 1 and len(list((root / "plots").iterdir())) == 2, "half a directory"
        found["plots"] = inside.pop()
    return found


def test_outputs_appear_together_only_when_the_block_succeeds(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_outputs(tmp_path, "v1")
    finally:
        os.umask(old)
    assert versions(tmp_path) == {"card.json": "v1", "plots": "v1"}
    assert mode(tmp_path / "card.json") == 0o644 and mode(tmp_path / "plots") == 0o755
    with (
        pytest.raises(OSError, match="No space left"),
        files.outputs(tmp_path / "card.json", tmp_path / "plots") as out,
    ):
        out.dir(tmp_path / "plots")
        files.write_json(out.path(tmp_path / "plots") / "a.json", {"version": "v2"})
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert versions(tmp_path) == {"card.json": "v1", "plots": "v1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "plots"]


def test_a_declared_output_the_block_did_not_write_fails_the_commit(tmp_path: Path) -> None:
    write_outputs(tmp_path, "v1")
    with (
        pytest.raises(FileNotFoundError, match="plots"),
        files.outputs(tmp_path / "card.json", tmp_path / "plots") as out,
    ):
        files.write_json(out.path(tmp_path / "card.json"), {"version": "v2"})
    assert versions(tmp_path) == {"card.json": "v1", "plots": "v1"}


@pytest.mark.parametrize("previous", [True, False])
def test_a_crash_inside_the_commit_leaves_a_prefix_of_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, previous: bool
) -> None:
    """The commit is several renames; stopped after any of them, the outputs present are the first
    ones in the declared order, all from the same run (old or new), never a mix."""
    renames = 0
    crash_at = 0
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        nonlocal renames
        renames += 1
        if renames == crash_at:
            raise KeyboardInterrupt  # what a signal does to Python mid-commit
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    seen = []
    for point in range(1, 8):
        root = tmp_path / str(point)
        root.mkdir()
        crash_at = 0
        if previous:
            write_outputs(root, "old")
        renames, crash_at = 0, point
        with contextlib.suppress(KeyboardInterrupt):
            write_outputs(root, "new")
        state = versions(root)
        assert list(state) == ["card.json", "plots"][: len(state)], state
        assert len(set(state.values())) <= 1, state
        seen.append(tuple(state.items()))
    assert (("card.json", "new"), ("plots", "new")) in seen  # the loop got past the last rename
    assert len(set(seen)) >= 3  # and crashed at distinct points of the commit


def test_staging_left_by_a_killed_run_is_removed_by_the_next_commit(tmp_path: Path) -> None:
    debris = tmp_path / ".card.json.~abc123.tmp"
    (debris / "card.json").parent.mkdir()
    (debris / "card.json").write_text("{}")
    write_outputs(tmp_path, "v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "plots"]
