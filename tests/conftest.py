"""Fixtures shared by the test tiers: a hermetic environment for git and DVC subprocesses, and a
small reproduced copy of this repository (built once per session, copied per test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_ROWS = 3000  # enough rows for every stage's checks, few enough for a quick `dvc repro`


def tool_env() -> dict[str, str]:
    """os.environ for git/DVC/stage subprocesses: this venv's tools first, a fixed git identity,
    no user or system git config, one OpenMP thread (the test machine is shared)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        OMP_NUM_THREADS="1",
        DVC_NO_ANALYTICS="1",
    )
    return env


@pytest.fixture
def tool_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The same environment for code under test that spawns git or DVC in-process."""
    for key, value in tool_env().items():
        monkeypatch.setenv(key, value)
    yield


def run(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def edit_file(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of `old`, so a test never edits something it did not mean to."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected one '{old}'"
    path.write_text(text.replace(old, new))


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's tracked files in a fresh git repo, `dvc repro` run on SMALL_ROWS rows and
    the result committed on `main`. Copy it (copy_repo) before changing anything."""
    repo = tmp_path_factory.mktemp("reproduced") / "repo"
    listed = run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    edit_file(repo / "params.yaml", "n_rows: 30000", f"n_rows: {SMALL_ROWS}")
    run("git", "init", "-q", "-b", "main", cwd=repo)
    run("dvc", "repro", "-q", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", "reproduce the pipeline on a small table", cwd=repo)
    return repo
