"""The repository keeps its promises to a new user: the README's commands are the ones CI runs."""

from __future__ import annotations

import re

from tests.conftest import REPO


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
