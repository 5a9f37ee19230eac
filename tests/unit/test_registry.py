"""Reading the registry from tags, choosing versions and rollback targets: pure functions, no git."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelops import registry
from modelops.errors import RegistryError
from modelops.registry import TagRecord

C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
ROLLBACK = "roll back\n\nModelops-Operation: rollback"


def tag(name: str, commit: str, time: int, message: str = "") -> TagRecord:
    return TagRecord(
        name=name, commit=commit, time=time, author="a <a@example.com>", message=message
    )


def three_versions(*stage_tags: TagRecord) -> registry.Registry:
    return registry.build_registry(
        "churn",
        [
            tag("churn@v1.0.0", C1, 100),
            tag("churn@v1.1.0", C2, 200),
            tag("churn@v1.10.0", C3, 300),
            *stage_tags,
        ],
    )


def test_versions_are_ordered_by_semver_not_by_text() -> None:
    reg = three_versions()
    assert [v.version for v in reg.versions] == ["v1.10.0", "v1.1.0", "v1.0.0"]
    assert registry.resolve(reg, "latest").version == "v1.10.0"


def test_tags_of_other_models_and_other_grammars_are_ignored() -> None:
    reg = registry.build_registry(
        "churn",
        [
            tag("churn@v1.0.0", C1, 100),
            tag("fraud@v2.0.0", C2, 110),
            tag("fraud#prod#1", C2, 120),
            tag("release-2024", C2, 130),
            tag("churn@1.0.0", C2, 140),  # not GTO's grammar: versions start with v
        ],
    )
    assert [v.version for v in reg.versions] == ["v1.0.0"]
    assert reg.stages == {}
    assert [e.tag for e in reg.events] == ["churn@v1.0.0"]


def test_a_stage_is_held_by_its_latest_assignment_and_released_by_unassignment() -> None:
    reg = three_versions(
        tag("churn#prod#1", C1, 400),
        tag("churn#prod#2", C2, 500),  # assigned by another tool without releasing v1.0.0
        tag("churn#staging#3", C3, 600),
        tag("churn#staging!#4", C3, 700),
    )
    assert reg.stages == {"prod": "v1.1.0"}
    assert {v.version: v.stages for v in reg.versions} == {
        "v1.10.0": [],
        "v1.1.0": ["prod"],
        "v1.0.0": [],
    }


def test_a_deregistered_version_holds_no_stage_and_is_not_latest() -> None:
    reg = three_versions(tag("churn#prod#1", C3, 400), tag("churn@v1.10.0!", C3, 500))
    assert reg.stages == {}
    assert [v.version for v in reg.versions if v.deregistered] == ["v1.10.0"]
    assert registry.resolve(reg, "latest").version == "v1.1.0"


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        ("v1.1.0", "v1.1.0"),
        ("1.1.0", "v1.1.0"),
        ("churn@v1.1.0", "v1.1.0"),
        ("prod", "v1.0.0"),
        ("churn#prod", "v1.0.0"),
        ("latest", "v1.10.0"),
    ],
)
def test_resolve_accepts_versions_tags_stages_and_latest(ref: str, version: str) -> None:
    reg = three_versions(tag("churn#prod#1", C1, 400))
    assert registry.resolve(reg, ref).version == version


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("v2.0.0", r"no version 'v2\.0\.0' \(known: v1\.10\.0, v1\.1\.0, v1\.0\.0\)"),
        ("staging", r"holds stage 'staging' \(stages held now: prod \(v1\.0\.0\)\)"),
        ("fraud@v1.0.0", "names another model"),
    ],
)
def test_resolve_names_what_exists_when_a_ref_is_unknown(ref: str, message: str) -> None:
    reg = three_versions(tag("churn#prod#1", C1, 400))
    with pytest.raises(RegistryError, match=message):
        registry.resolve(reg, ref)


def test_events_are_read_in_time_order_whatever_the_tag_names() -> None:
    # Same second: the counter decides, as GTO's counter grows with every tag.
    reg = three_versions(tag("churn#prod#10", C2, 400), tag("churn#prod!#9", C1, 400))
    assert [e.tag for e in reg.events][-2:] == ["churn#prod!#9", "churn#prod#10"]
    assert reg.stages == {"prod": "v1.1.0"}


def test_holder_stack_pops_rolled_back_tenures() -> None:
    reg = three_versions(
        tag("churn#prod#1", C1, 400),
        tag("churn#prod!#2", C1, 500),
        tag("churn#prod#3", C2, 501),
        tag("churn#prod!#4", C2, 600),
        tag("churn#prod#5", C3, 601),
        tag("churn#prod!#6", C3, 700, ROLLBACK),
        tag("churn#prod#7", C2, 701, ROLLBACK),
    )
    assert reg.stages == {"prod": "v1.1.0"}
    # v1.10.0 was rolled back, so the next rollback from v1.1.0 goes to v1.0.0.
    assert registry.holder_stack(reg.events, "prod") == ["v1.0.0", "v1.1.0"]
    assert registry.holder_stack(reg.events, "staging") == []


def test_holder_stack_keeps_a_version_promoted_twice() -> None:
    reg = three_versions(
        tag("churn#prod#1", C1, 400),
        tag("churn#prod#2", C2, 500),
        tag("churn#prod#3", C1, 600),
    )
    assert registry.holder_stack(reg.events, "prod") == ["v1.0.0", "v1.1.0", "v1.0.0"]


def _version(v: str) -> registry.Version:
    return registry.Version(name="churn", version=v, commit=C1, time=1, author="a", message="")


@pytest.mark.parametrize(
    ("greatest", "bump", "expected"),
    [
        (None, None, "v1.0.0"),
        (None, "minor", "v0.1.0"),
        ("v1.2.3", None, "v1.3.0"),
        ("v1.2.3", "patch", "v1.2.4"),
        ("v1.2.3", "minor", "v1.3.0"),
        ("v1.2.3", "major", "v2.0.0"),
    ],
)
def test_next_version_bumps_from_the_greatest(
    greatest: str | None, bump: registry.Bump | None, expected: str
) -> None:
    base = _version(greatest) if greatest else None
    assert registry.next_version(base, [], bump) == expected


def test_changed_inputs_make_the_default_bump_major_and_refuse_a_minor_one() -> None:
    base = _version("v1.2.3")
    changes = ["removed feature 'age'"]
    assert registry.next_version(base, changes) == "v2.0.0"
    with pytest.raises(
        RegistryError, match=r"inputs changed since churn@v1\.2\.3 .*age.*--bump major"
    ):
        registry.next_version(base, changes, "minor")
    with pytest.raises(RegistryError, match="new major version"):
        registry.next_version(base, changes, version="v1.9.0")
    assert registry.next_version(base, changes, version="v3.0.0") == "v3.0.0"


@pytest.mark.parametrize("version", ["1.2.3", "v1.2", "v1.2.3-rc.1", "v01.2.3", "latest"])
def test_an_explicit_version_must_be_plain_semver(version: str) -> None:
    with pytest.raises(RegistryError, match=r"vMAJOR\.MINOR\.PATCH"):
        registry.next_version(None, [], version=version)


CARD: dict[str, Any] = {
    "classes": [0, 1],
    "feature_schema": {
        "features": [
            {"name": "age", "kind": "numeric", "dtype": "integer", "nullable": True, "min": 18.0},
            {"name": "plan", "kind": "categorical", "categories": ["a", "b"], "nullable": False},
        ]
    },
}


def test_contract_ignores_what_retraining_on_new_data_changes() -> None:
    new = copy.deepcopy(CARD)
    new["feature_schema"]["features"][0].update(min=0.0, nullable=False)
    new["feature_schema"]["features"][1]["categories"] = ["a", "b", "c"]
    assert registry.contract_changes(CARD, new) == []


def test_contract_names_every_change_a_client_would_feel() -> None:
    new = copy.deepcopy(CARD)
    features = new["feature_schema"]["features"]
    features[0]["dtype"] = "float"
    features[1]["name"] = "tier"
    new["classes"] = [0, 1, 2]
    assert registry.contract_changes(CARD, new) == [
        "added feature 'tier'",
        "removed feature 'plan'",
        "feature 'age' changed from numeric/integer to numeric/float",
        "classes changed from [0, 1] to [0, 1, 2]",
    ]
    assert registry.contract_changes(None, new) == []


def test_flatten_names_params_the_way_dvc_does() -> None:
    assert registry.flatten({"train": {"hgb": {"max_iter": 5}, "x": []}, "seed": 1}) == {
        "train.hgb.max_iter": 5,
        "train.x": [],
        "seed": 1,
    }
