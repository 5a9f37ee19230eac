"""Fixtures shared by the test tiers: a hermetic environment for git and DVC subprocesses, small
params, a trained workspace, and a small reproduced copy of this repository."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = REPO = Path(__file__).resolve().parents[1]
SMALL_ROWS = 3000  # enough rows for every stage's checks, few enough for a quick `dvc repro`

# In-process training shares two cores with the tests' other processes: OpenMP worker threads that
# spin-wait for a busy core made one 1,500-row fit take minutes. One thread, set before sklearn loads.
os.environ["OMP_NUM_THREADS"] = "1"


def require_tool(name: str) -> str:
    """The path of a system tool (Debian packages that .ci/run installs). Missing, a test skips on
    a developer's machine and fails in CI, where MODELOPS_REQUIRE_SYSTEM_TOOLS=1."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package; .ci/run installs it)"
        if os.environ.get("MODELOPS_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def tool_env(**extra: str) -> dict[str, str]:
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
    env.update(extra)
    return env


@pytest.fixture
def tool_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The same environment for code under test that spawns git or DVC in-process."""
    for key, value in tool_env().items():
        monkeypatch.setenv(key, value)
    yield


def run(
    *args: str | Path, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or tool_env(),
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


def fresh_clone(dest: Path) -> Path:
    """This repository's committed files in a new git repository at `dest`: what a fresh clone
    holds (no DVC cache, no DVC-tracked outputs)."""
    listed = run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    run("git", "init", "-q", "-b", "main", cwd=dest)
    run("git", "add", "-A", cwd=dest)
    run("git", "commit", "-q", "-m", "a fresh clone of the repository", cwd=dest)
    return dest


def repo_params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def write_params(directory: Path, **overrides: dict[str, Any]) -> dict[str, Any]:
    """The repository's params.yaml with section overrides merged in, written to `directory`."""
    params = repo_params()
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


REPRO_OUTPUT = "dvc-repro.out"  # beside the reproduced repository: what `dvc repro` printed


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's tracked files in a fresh git repo, `dvc repro` run on SMALL_ROWS rows and
    the result committed on `main`. Copy it (copy_repo) before changing anything."""
    repo = fresh_clone(tmp_path_factory.mktemp("reproduced") / "repo")
    edit_file(repo / "params.yaml", "n_rows: 30000", f"n_rows: {SMALL_ROWS}")
    repro = run("dvc", "repro", cwd=repo)
    # What the README's first command shows a person, kept for the tests of that screen.
    (repo.parent / REPRO_OUTPUT).write_text(repro.stdout + repro.stderr)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", "reproduce the pipeline on a small table", cwd=repo)
    return repo


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, made current, with the repo's params at a small data size."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, generate={"n_rows": SMALL_ROWS})
    return tmp_path


def run_stages(names: list[str]) -> None:
    """Run stages' main() in-process, in the current directory."""
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
        run_stages(["generate", "prepare", "train", "evaluate", "profile"])
    finally:
        os.chdir(cwd)
    return directory


@pytest.fixture
def stage_runner() -> Callable[[list[str]], None]:
    return run_stages
