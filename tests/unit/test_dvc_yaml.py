"""dvc.yaml is honest: each stage depends on every source module it runs, and names paths as paths.py does."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelops import paths
from tests.conftest import REPO

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


@functools.cache
def modules_imported_by(module: str) -> set[str]:
    """Source files of every modelops module that `python -m <module>` imports (in a fresh interpreter)."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'modelops' and getattr(m, '__file__', None))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {str(Path(f).resolve().relative_to(REPO)) for f in json.loads(out)}


def out_paths(stage: dict) -> set[str]:
    found = set()
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key, []):
            found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return found


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_every_module_it_imports(name: str) -> None:
    stage = STAGES[name]
    prefix = "python -m "
    assert stage["cmd"].startswith(prefix), (
        f"stage {name} must run `python -m modelops.stages.{name}`"
    )
    module = stage["cmd"][len(prefix) :].split()[0]
    assert module == f"modelops.stages.{name}"
    imported = modules_imported_by(module)
    assert f"src/modelops/stages/{name}.py" in imported
    missing = imported - set(stage["deps"])
    assert not missing, f"stage {name} imports modules missing from its deps: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_no_source_file_it_does_not_import(name: str) -> None:
    stage = STAGES[name]
    listed = {d for d in stage["deps"] if d.startswith("src/")}
    extra = listed - modules_imported_by(stage["cmd"].split()[2])
    assert not extra, f"stage {name} depends on modules it never imports: {sorted(extra)}"


def test_outputs_named_in_dvc_yaml_are_declared_in_paths_py() -> None:
    declared = {str(v) for v in vars(paths).values() if isinstance(v, Path)}
    for name, stage in STAGES.items():
        for out in out_paths(stage):
            assert out.rstrip("/") in declared, (
                f"{name} writes {out}, which paths.py does not declare"
            )


def test_top_level_plots_point_at_stage_outputs() -> None:
    outs = set().union(*(out_paths(stage) for stage in STAGES.values()))
    for entry in DVC_YAML["plots"]:
        path = next(iter(entry))
        assert any(path == o or path.startswith(o.rstrip("/") + "/") for o in outs), path
