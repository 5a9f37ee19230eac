"""Fixtures shared by every tier: a clean environment for git/DVC subprocesses, small params, a
trained workspace in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)

# Subprocesses (git, dvc, stage commands) must see the venv's python first and a git identity.
os.environ["PATH"] = VENV_BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("GIT_AUTHOR_NAME", "modelops tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@modelops.local")
os.environ.setdefault("GIT_COMMITTER_NAME", "modelops tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@modelops.local")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["GIT_CONFIG_NOSYSTEM"] = "1"

SMALL_ROWS = 3000


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write_params(directory: Path, **overrides: dict) -> dict:
    """The repository's params.yaml with section overrides merged in, written to `directory`."""
    params = repo_params()
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run(cmd: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, made current, with the repo's params at a small data size."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, generate={"n_rows": SMALL_ROWS})
    return tmp_path


def _run_stages(names: list[str]) -> None:
    import importlib

    for name in names:
        importlib.import_module(f"modelops.stages.{name}").main()


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where every training stage has run once on the small bundled data (read-only use)."""
    directory = tmp_path_factory.mktemp("trained")
    write_params(directory, generate={"n_rows": SMALL_ROWS})
    cwd = Path.cwd()
    os.chdir(directory)
    try:
        _run_stages(["generate", "prepare", "train", "evaluate", "profile"])
    finally:
        os.chdir(cwd)
    return directory


@pytest.fixture
def stage_runner() -> Callable[[list[str]], None]:
    return _run_stages


def copy_repo(dest: Path) -> Path:
    """The repository's committed files copied into a fresh git repository at `dest`: what a fresh
    clone holds (no DVC cache, no DVC-tracked outputs)."""
    files = run(["git", "ls-files", "-z"], cwd=REPO).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    run(["git", "init", "-q", "-b", "main"], cwd=dest)
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "commit", "-qm", "copy of the repository"], cwd=dest)
    return dest


@pytest.fixture
def git_repo_copy(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")
