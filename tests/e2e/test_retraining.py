"""The README's retraining walk-through, run verbatim in a fresh clone on the bundled data: no
champion passes, a better challenger registers, a worse one is refused with its numbers and forced
in with a reason that `registry show` prints, and drift is judged against the new model's profile.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelops import registry
from tests.conftest import REPO, fresh_clone, run, tool_env

pytestmark = pytest.mark.usefixtures("tool_environ")

SECTION = "## Retrain: is the new model better than the one in production?"
REASON = "a baseline for the latency tests, never for prod"


def walkthrough() -> list[str]:
    text = (REPO / "README.md").read_text()
    assert SECTION in text, "README.md lost its retraining walk-through"
    block = re.search(r"```sh\n(.*?)```", text[text.index(SECTION) :], re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip() and line[0] != "#"]


@dataclass(frozen=True)
class Step:
    command: str
    code: int
    out: str
    err: str
    tags: frozenset[str]  # the repository's tags after the step
    drift: dict[str, object] | None  # metrics/drift.json after the step


@dataclass(frozen=True)
class Walk:
    repo: Path
    steps: list[Step]

    def step(self, starts: str, nth: int = 0) -> Step:
        return [s for s in self.steps if s.command.startswith(starts)][nth]


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Walk:
    repo = fresh_clone(tmp_path_factory.mktemp("retraining") / "repo")
    done = []
    for command in walkthrough():
        proc = subprocess.run(
            ["bash", "-c", command], cwd=repo, env=tool_env(), capture_output=True, text=True
        )
        drift = repo / "metrics" / "drift.json"
        done.append(
            Step(
                command=command,
                code=proc.returncode,
                out=proc.stdout,
                err=proc.stderr,
                tags=frozenset(run("git", "tag", cwd=repo).stdout.split()),
                drift=json.loads(drift.read_text()) if drift.is_file() else None,
            )
        )
    return Walk(repo, done)


def test_every_command_does_what_its_comment_says(walk: Walk) -> None:
    for s in walk.steps:
        refused = "# refused" in s.command
        assert s.code == (1 if refused else 0), f"{s.command}\n{s.out}\n{s.err}"


def test_with_no_champion_the_first_model_passes(walk: Walk) -> None:
    first = walk.step("modelops registry register")
    assert "registered churn@v1.0.0" in first.out and "gate: no_champion" in first.out
    gate = registry.show("v1.0.0", walk.repo).gate
    assert gate is not None and gate.verdict == "no_champion" and gate.champion is None


def test_a_better_challenger_on_new_data_registers(walk: Walk) -> None:
    second = walk.step("modelops registry register", 1)
    assert "registered churn@v1.1.0" in second.out
    assert "gate: better against v1.0.0 (holding prod) on roc_auc" in second.out
    gate = registry.show("v1.1.0", walk.repo).gate
    assert gate is not None and gate.verdict == "better"
    assert gate.champion is not None and gate.champion.version == "v1.0.0"
    assert gate.interval is not None and 0 < gate.interval.low <= gate.delta <= gate.interval.high
    assert gate.delong is not None and gate.delong.p_value < 0.05


def test_a_worse_challenger_is_refused_with_the_numbers(walk: Walk) -> None:
    refused = walk.step("modelops registry register", 2)
    assert refused.code == 1 and refused.out == ""
    assert "the gate refuses this candidate: worse against v1.1.0 (holding prod)" in refused.err
    numbers = re.search(
        r"candidate (0\.\d+)  champion (0\.\d+)  difference (-0\.\d+)  95% interval "
        r"\[(-0\.\d+), (-0\.\d+)\] \(1000 paired resamples of 6000 rows\)",
        refused.err,
    )
    assert numbers is not None, refused.err
    candidate, champion, delta, low, high = map(float, numbers.groups())
    assert candidate < champion and low <= delta <= high < -0.005
    assert "rule: worse:" in refused.err and "(gate.min_delta)" in refused.err
    assert '--force --reason "why"' in refused.err
    assert not any(t.startswith("churn@v1.2") for t in refused.tags)


def test_force_with_a_reason_registers_and_show_prints_the_reason(walk: Walk) -> None:
    forced = walk.step("modelops registry register --force")
    assert forced.code == 0 and "registered churn@v1.2.0" in forced.out
    shown = walk.step("modelops registry show v1.2.0")
    assert f"registered although the gate refused it; reason: {REASON}" in shown.out
    lineage = registry.show("v1.2.0", walk.repo)
    assert lineage.gate_override == REASON
    assert lineage.gate is not None and lineage.gate.verdict == "worse"
    assert f"Modelops-Gate-Override: {REASON}" in lineage.version.message


def test_drift_is_judged_against_the_profile_of_the_new_champion(walk: Walk) -> None:
    checked = walk.step("modelops drift check")
    repo = walk.repo
    v2 = registry.show("v1.1.0", repo)
    v1 = registry.show("v1.0.0", repo)
    assert v2.card is not None and v1.card is not None
    assert checked.drift is not None
    assert checked.drift["model"] == {"name": "churn", "sha256": v2.card.artifact.sha256}
    assert v2.card.artifact.sha256[:12] in checked.out
    assert v1.card.artifact.sha256 != v2.card.artifact.sha256


def test_the_walkthrough_leaves_a_clean_repository_and_a_readable_list(walk: Walk) -> None:
    repo = walk.repo
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""
    assert "Data and pipelines are up to date." in run("dvc", "status", cwd=repo).stdout
    listed = run("modelops", "registry", "list", cwd=repo).stdout
    assert all(len(line) <= 100 for line in listed.splitlines()), listed
    rows = {line.split()[0]: line for line in listed.splitlines() if line.startswith("v1.")}
    assert "better +0.0042" in rows["v1.1.0"] and "prod" in rows["v1.1.0"]
    assert "worse -0.0253 (forced)" in rows["v1.2.0"]
    assert "no_champion" in rows["v1.0.0"]


def test_dvc_shows_the_gate_as_metric_columns(walk: Walk) -> None:
    shown = run("dvc", "exp", "show", "--json", cwd=walk.repo).stdout
    summary = {"verdict": "worse", "delta": -0.025269, "low": -0.030748, "high": -0.019199}
    assert json.dumps({"data": summary}) in shown
    table = run("dvc", "metrics", "show", "metrics/gate.json", cwd=walk.repo).stdout
    header, row = table.splitlines()
    assert header.split() == ["Path", "delta", "high", "low", "verdict"]
    assert row.split() == ["metrics/gate.json", "-0.02527", "-0.0192", "-0.03075", "worse"]
