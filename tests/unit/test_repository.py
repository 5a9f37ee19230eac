"""The repository keeps its promises to a new user: the README's commands are the ones CI runs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def readme_commands() -> list[str]:
    first_block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert first_block, "README.md must open with a shell block holding the two commands"
    return [line for line in first_block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_first_screen_has_exactly_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    setup_and_run, setup_and_test = commands
    assert "uv sync --frozen" in setup_and_run and "dvc repro" in setup_and_run
    assert "uv sync --frozen" in setup_and_test and setup_and_test.endswith("pytest")
    head = (REPO / "README.md").read_text().splitlines()[:12]
    assert any(setup_and_run in line for line in head) and any(
        setup_and_test in line for line in head
    )


def test_the_first_command_installs_only_what_it_runs_and_prints_a_summary() -> None:
    setup_and_run, setup_and_test = readme_commands()
    # no pytest, mypy, moto or schemathesis to reproduce a pipeline; the tests need them
    assert "uv sync --frozen --no-dev &&" in setup_and_run and "--no-dev" not in setup_and_test
    # not `dvc metrics show`: one table of every metric side by side, ~150 columns wide
    assert setup_and_run.endswith("&& dvc repro && modelops summary")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_uv_pinned_in_the_commands_is_the_one_the_lock_installs() -> None:
    pinned = re.search(r"uv==([\d.]+)", readme_commands()[0])
    assert pinned
    lock = (REPO / "uv.lock").read_text()
    assert re.search(rf'name = "uv"\nversion = "{re.escape(pinned.group(1))}"', lock)


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_the_code_passes_ruff_with_the_complexity_rule_on() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C90" in config["select"] and config["mccabe"]["max-complexity"] == 10
    for args in (("check", "--no-cache", "."), ("format", "--check", "--no-cache", ".")):
        result = _tool("ruff", *args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_passes_mypy_strict(tmp_path: Path) -> None:
    result = _tool("mypy", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


# A declarative table may run longer: one metric per statement, nothing to branch on.
LONG_TABLES = {("serve/metrics.py", "__init__")}


def test_no_module_or_function_grows_past_what_one_reader_holds() -> None:
    src = REPO / "src" / "modelops"
    too_long = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(src).as_posix()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (where, node.name) not in LONG_TABLES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_the_readme_code_layout_names_every_module_and_only_those() -> None:
    text = (REPO / "README.md").read_text()
    layout = re.search(r"## Code layout\n.*?```text\n(.*?)```", text, re.S)
    assert layout, "README.md has a Code layout section with a text block"
    named = set(re.findall(r"[a-z_0-9]+", layout.group(1)))
    src = REPO / "src" / "modelops"
    files = [p for p in src.rglob("*.py") if p.stem not in ("__init__", "__main__")]
    packages = [p.parent for p in src.rglob("__init__.py") if p.parent != src]
    modules = {p.stem for p in files} | {p.name for p in packages}
    missing = sorted(modules - named)
    assert not missing, f"modules the README's layout does not name: {missing}"
    words = re.findall(r"\b([a-z_0-9]+)(?:\.py|/)", layout.group(1))
    stale = sorted(w for w in words if w not in modules | {"src", "modelops"})
    assert not stale, f"names the README's layout gives that src/modelops has not: {stale}"
