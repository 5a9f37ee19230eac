"""Every stage writes its outputs all or nothing: a disk-full error at its last write, or a SIGKILL
while train writes, leaves the previous outputs (or none), never a model without its card."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from modelops.card import load_card, verify_artifact
from tests.conftest import REPO, run_stages, tool_env

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

# The output each stage wrote last before its outputs were committed together: a failure there
# used to leave the outputs written before it replaced and the rest stale.
LAST_WRITE = {
    "generate": paths.scenario_path("new_region").name,
    "prepare": paths.SCHEMA.name,
    "train": paths.CARD.name,
    "evaluate": paths.METRICS.name,
    "compare": paths.GATE.name,
    "profile": paths.PROFILE.name,
    "drift": paths.DRIFT_HTML.name,
}


def outputs_of(stage: str) -> list[Path]:
    """The stage's outputs as dvc.yaml declares them."""
    found = []
    for key in ("outs", "metrics"):
        for entry in STAGES[stage].get(key, []):
            found.append(Path(next(iter(entry)) if isinstance(entry, dict) else entry))
    return found


def identity(path: Path) -> Any:
    """What changes when a file or directory is rewritten, even with the same bytes."""
    if not path.exists():
        return None
    st = path.stat()
    children = sorted((c.name, identity(c)) for c in path.iterdir()) if path.is_dir() else None
    return (st.st_ino, st.st_mtime_ns, children)


def listing(directories: set[Path]) -> dict[Path, list[str]]:
    return {d: sorted(os.listdir(d)) if d.is_dir() else [] for d in directories}


@pytest.fixture(scope="module")
def finished(trained_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained workspace where compare (no champion yet) and drift have run too:
    every stage's outputs."""
    root = tmp_path_factory.mktemp("finished") / "ws"
    shutil.copytree(trained_workspace, root)
    shutil.copy(REPO / paths.CHAMPIONS, root / paths.CHAMPIONS)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_stages(["compare", "drift"])
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def workspace(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(finished, root)
    monkeypatch.chdir(root)
    return root


def fail_writing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The disk fills up exactly when a file called `name` is written, by any writer a stage uses."""

    def failing(write: Callable[..., Any], where: int) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if Path(args[where]).name == name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[where]))
            return write(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(files, "write_json", failing(files.write_json, 0))
    monkeypatch.setattr(files, "write_bytes", failing(files.write_bytes, 0))
    monkeypatch.setattr(joblib, "dump", failing(joblib.dump, 1))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing(pd.DataFrame.to_parquet, 1))


@pytest.mark.parametrize("stage", sorted(LAST_WRITE))
def test_a_stage_that_fails_at_its_last_write_leaves_its_previous_outputs(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    outs = outputs_of(stage)
    assert all(out.exists() for out in outs)
    before = {out: identity(out) for out in outs}
    parents = listing({out.parent for out in outs})
    fail_writing(monkeypatch, LAST_WRITE[stage])
    with pytest.raises(OSError, match="No space left on device"):
        run_stages([stage])
    assert {out: identity(out) for out in outs} == before
    assert listing({out.parent for out in outs}) == parents  # no staging or temporary left


def test_train_failing_in_a_fresh_workspace_leaves_no_model(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for out in outputs_of("train"):
        out.unlink()
    fail_writing(monkeypatch, paths.CARD.name)
    with pytest.raises(OSError, match="No space left on device"):
        run_stages(["train"])
    assert sorted(os.listdir(paths.MODELS)) == [paths.PROFILE.name]


def watch_and_kill(
    root: Path, trigger: Callable[[dict[str, int], dict[str, int]], bool], delay: float
) -> int:
    """Run the train stage and SIGKILL it `delay` seconds after `trigger(before, now)` first holds
    for the inodes of the entries in models/; returns its exit status."""
    models = root / paths.MODELS

    def inodes() -> dict[str, int]:
        return {entry.name: entry.inode() for entry in os.scandir(models)}

    before = inodes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops.stages.train"],
        cwd=root,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if trigger(before, inodes()):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0002)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def something_new(before: dict[str, int], now: dict[str, int]) -> bool:
    return bool(set(now) - set(before))


def an_output_replaced(before: dict[str, int], now: dict[str, int]) -> bool:
    return any(now.get(n) != before.get(n) for n in (paths.MODEL.name, paths.CARD.name))


def assert_no_model_without_its_card(root: Path) -> None:
    model, card = root / paths.MODEL, root / paths.CARD
    if card.exists():
        loaded = load_card(card)  # never half a card
        if model.exists():
            verify_artifact(loaded, model)  # and never another run's model beside it
    else:
        assert not model.exists(), "a model without its card"


@pytest.fixture
def retrain_workspace(workspace: Path) -> Iterator[Path]:
    """The workspace with its outputs in place and params that train a different model, quickly."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["base"]["seed"] += 1
    params["train"]["hist_gradient_boosting"]["max_iter"] = 20
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    yield workspace


@pytest.mark.parametrize(
    ("trigger", "delay"),
    [
        (something_new, 0.0),
        (something_new, 0.005),
        (something_new, 0.02),
        (an_output_replaced, 0.0),
    ],
    ids=["at-first-write", "5ms-later", "20ms-later", "at-first-replace"],
)
def test_train_killed_while_writing_never_leaves_a_model_without_its_card(
    retrain_workspace: Path, trigger: Callable[[dict[str, int], dict[str, int]], bool], delay: float
) -> None:
    root = retrain_workspace
    status = watch_and_kill(root, trigger, delay)
    assert status == -signal.SIGKILL  # killed while writing, not after it finished
    assert_no_model_without_its_card(root)
    # The next run finishes the job and sweeps what the killed one left behind.
    subprocess.run(
        [sys.executable, "-m", "modelops.stages.train"], cwd=root, env=tool_env(), check=True
    )
    assert_no_model_without_its_card(root)
    assert sorted(os.listdir(root / paths.MODELS)) == sorted(
        p.name for p in (paths.CARD, paths.MODEL, paths.PROFILE)
    )
