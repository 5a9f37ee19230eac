"""champions.yaml: what the registry writes for the compare stage, read back; the gate's stage
name checked as a stage name."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops import gate, paths
from modelops.errors import ParamsError, RegistryError
from modelops.params import parse
from modelops.registry import champions
from modelops.registry.tags import Registry
from tests.conftest import REPO

EMPTY = Registry(name="churn", versions=[], stages={}, events=[])


def test_the_committed_file_is_what_the_registry_writes_for_a_registry_without_stages(
    tmp_path: Path,
) -> None:
    champions.record(tmp_path, EMPTY, "prod")
    assert (tmp_path / paths.CHAMPIONS).read_bytes() == (REPO / paths.CHAMPIONS).read_bytes()
    assert champions.recorded(tmp_path / paths.CHAMPIONS, "prod") is None


def test_a_recorded_champion_is_read_by_its_stage(tmp_path: Path) -> None:
    path = tmp_path / "champions.yaml"
    path.write_text(
        "prod:\n  version: v1.1.0\n  commit: " + "c" * 40 + "\n  model_md5: " + "m" * 32 + "\n"
        "staging: null\n"
    )
    assert champions.recorded(path, "prod") == gate.ChampionRef(
        "prod", "v1.1.0", "c" * 40, "m" * 32
    )
    assert champions.recorded(path, "staging") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "not found; run `modelops registry sync`"),
        ("staging: null\n", "has no entry for stage 'prod' (params gate.against)"),
        ("prod:\n  version: v1.0.0\n", "is not what `modelops registry` writes"),
        ("- prod\n", "is not what `modelops registry` writes"),
    ],
)
def test_a_missing_or_foreign_file_says_how_to_write_it(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "champions.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(RegistryError, match="run `modelops registry sync`") as err:
        champions.recorded(path, "prod")
    assert message in str(err.value)


def test_gate_against_must_be_a_stage_name_the_registry_writes() -> None:
    assert champions.gate_stage(parse("gate: {against: staging}\n")) == "staging"
    with pytest.raises(ParamsError, match=r"params.yaml: gate.against: 'PROD' is not a valid"):
        champions.gate_stage(parse("gate: {against: PROD}\n"))
