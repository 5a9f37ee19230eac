"""Atomic outputs: all or nothing, and with the permissions a normal write would give them."""

from __future__ import annotations

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
