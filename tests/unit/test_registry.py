"""GTO's tag grammar, the registry it describes, choosing versions and rollback targets: tags.py,
pure functions, no git."""

from __future__ import annotations

import gto.constants
import pytest

from modelops.errors import RegistryError
from modelops.registry import tags
from modelops.registry.tags import Tag, TagRecord

C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
ROLLBACK = "roll back\n\nModelops-Operation: rollback"


def tag(name: str, commit: str, time: int, message: str = "") -> TagRecord:
    return TagRecord(
        name=name, commit=commit, time=time, author="a <a@example.com>", message=message
    )


def three_versions(*stage_tags: TagRecord) -> tags.Registry:
    return tags.build_registry(
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
    assert tags.resolve(reg, "latest").version == "v1.10.0"


def test_tags_of_other_models_and_other_grammars_are_ignored() -> None:
    reg = tags.build_registry(
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
    assert tags.resolve(reg, "latest").version == "v1.1.0"


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
    assert tags.resolve(reg, ref).version == version


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
        tags.resolve(reg, ref)


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
    assert tags.holder_stack(reg.events, "prod") == ["v1.0.0", "v1.1.0"]
    assert tags.holder_stack(reg.events, "staging") == []


def test_holder_stack_keeps_a_version_promoted_twice() -> None:
    reg = three_versions(
        tag("churn#prod#1", C1, 400),
        tag("churn#prod#2", C2, 500),
        tag("churn#prod#3", C1, 600),
    )
    assert tags.holder_stack(reg.events, "prod") == ["v1.0.0", "v1.1.0", "v1.0.0"]


def _version(v: str) -> tags.Version:
    return tags.Version(name="churn", version=v, commit=C1, time=1, author="a", message="")


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
    greatest: str | None, bump: tags.Bump | None, expected: str
) -> None:
    base = _version(greatest) if greatest else None
    assert tags.next_version(base, [], bump) == expected


def test_changed_inputs_make_the_default_bump_major_and_refuse_a_minor_one() -> None:
    base = _version("v1.2.3")
    changes = ["removed feature 'age'"]
    assert tags.next_version(base, changes) == "v2.0.0"
    with pytest.raises(
        RegistryError, match=r"inputs changed since churn@v1\.2\.3 .*age.*--bump major"
    ):
        tags.next_version(base, changes, "minor")
    with pytest.raises(RegistryError, match="new major version"):
        tags.next_version(base, changes, version="v1.9.0")
    assert tags.next_version(base, changes, version="v3.0.0") == "v3.0.0"


@pytest.mark.parametrize("version", ["1.2.3", "v1.2", "v1.2.3-rc.1", "v01.2.3", "latest"])
def test_an_explicit_version_must_be_plain_semver(version: str) -> None:
    with pytest.raises(RegistryError, match=r"vMAJOR\.MINOR\.PATCH"):
        tags.next_version(None, [], version=version)


# ------------------------------------------------------------------------------------ grammar


def test_the_grammar_is_gtos_own() -> None:
    # Spelled in tags.py so reading the registry does not import GTO; it must stay GTO's.
    assert tags.TAG_RE.pattern == gto.constants.tag_re.pattern
    assert tags.NAME_RE.pattern == gto.constants.name_re.pattern


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("churn@v1.2.0", Tag(artifact="churn", action="register", version="v1.2.0")),
        (
            "churn@v1.2.0!#7",
            Tag(artifact="churn", action="deregister", version="v1.2.0", counter=7),
        ),
        ("churn@v1.10.0!", Tag(artifact="churn", action="deregister", version="v1.10.0")),
        ("churn#prod#3", Tag(artifact="churn", action="assign", stage="prod", counter=3)),
        ("churn#prod!#4", Tag(artifact="churn", action="unassign", stage="prod", counter=4)),
        (
            "churn#eu/prod_2#12",
            Tag(artifact="churn", action="assign", stage="eu/prod_2", counter=12),
        ),
        (
            "fraud-model@v2.0.0-rc.1",
            Tag(artifact="fraud-model", action="register", version="v2.0.0-rc.1"),
        ),
    ],
)
def test_every_tag_kind_round_trips(text: str, parsed: Tag) -> None:
    assert tags.parse_tag(text) == parsed
    assert tags.format_tag(parsed) == text
    assert tags.parse_tag(tags.format_tag(parsed)) == parsed
    # GTO reads the same event from the same name.
    m = gto.constants.tag_re.match(text)
    assert m is not None and m["artifact"] == parsed.artifact
    assert (m["version"], m["stage"]) == (parsed.version, parsed.stage)


@pytest.mark.parametrize(
    "text",
    [
        "churn@1.2.0",  # versions start with v
        "churn@v1.2",
        "churn@v01.2.0",
        "churn#prod#x",
        "churn#pr od#1",
        "churn#-prod#1",
        "churn##1",
        "churn",
        "@v1.0.0",
        "release-2024",
        "churn@created",  # GTO's markers, not events of a version or stage
        "churn@deprecated#2",
    ],
)
def test_tags_outside_the_grammar_are_not_registry_events(text: str) -> None:
    assert tags.parse_tag(text) is None


@pytest.mark.parametrize(
    "tag",
    [
        Tag(artifact="churn", action="register", version="1.2.0"),
        Tag(artifact="churn", action="register"),
        Tag(artifact="churn", action="assign", counter=1),
        Tag(artifact="churn", action="assign", stage="pr od", counter=1),
        Tag(artifact="churn", action="unassign", stage="prod!", counter=1),
        Tag(artifact="bad name", action="register", version="v1.0.0"),
        Tag(artifact="churn", action="register", version="v1.0.0", stage="prod"),
        Tag(artifact="churn", action="assign", stage="prod", counter=-1),
    ],
)
def test_a_tag_gto_would_read_differently_is_refused(tag: Tag) -> None:
    with pytest.raises(RegistryError, match="not a tag in GTO's grammar; nothing was written"):
        tags.format_tag(tag)


@pytest.mark.parametrize("stage", ["latest", "pr od", "prod!", "", "-prod", "prod#2"])
def test_stage_names_follow_gto_and_are_not_latest(stage: str) -> None:
    with pytest.raises(RegistryError, match="not a valid stage name"):
        tags.check_stage_name(stage, "churn")


@pytest.mark.parametrize("stage", ["PROD", "Prod", "eu/Prod", "STAGING-2"])
def test_stage_names_are_lower_case_so_prod_and_PROD_cannot_be_two_stages(stage: str) -> None:
    assert gto.constants.name_re.match(stage)  # GTO itself would write it
    with pytest.raises(RegistryError, match=r"lower case.*GTO's name rule") as err:
        tags.check_stage_name(stage, "churn")
    assert f"'{stage.lower()}'" in str(err.value)


@pytest.mark.parametrize("stage", ["prod", "staging", "eu/prod_2", "canary-1", "p"])
def test_lower_case_stage_names_in_gtos_grammar_are_accepted(stage: str) -> None:
    tags.check_stage_name(stage, "churn")


def test_a_registry_with_stages_differing_only_in_case_is_read_as_gto_reads_it() -> None:
    # Written by another tool (GTO accepts both): two stages, and a warning naming them.
    reg = three_versions(tag("churn#PROD#1", C1, 400), tag("churn#prod#2", C2, 500))
    assert reg.stages == {"PROD": "v1.0.0", "prod": "v1.1.0"}
    assert tags.resolve(reg, "PROD").version == "v1.0.0"
    assert tags.resolve(reg, "prod").version == "v1.1.0"
    assert tags.case_clashes(reg) == [["PROD", "prod"]]
    assert tags.case_clashes(three_versions(tag("churn#prod#1", C1, 400))) == []


def test_a_stage_asked_for_in_the_wrong_case_is_named() -> None:
    reg = three_versions(tag("churn#prod#1", C1, 400))
    with pytest.raises(RegistryError, match="stage names are lower case: did you mean 'prod'"):
        tags.resolve(reg, "Prod")


def test_a_rollback_is_read_from_its_trailer() -> None:
    def event(message: str) -> tags.Event:
        return tags.Event(
            tag="churn#prod#1", action="assign", commit=C1, time=1, author="a", message=message
        )

    assert tags.is_rollback(event(tags.rollback_trailer("roll back prod", "rollback")))
    assert not tags.is_rollback(event(tags.rollback_trailer("promote v1.0.0", "promote")))
    assert not tags.is_rollback(event("talks about Modelops-Operation: rollback inline"))


def test_an_override_reason_is_one_trailer_line_read_back_from_the_message() -> None:
    trailer = tags.override_trailer("a baseline for\n  the latency tests ")
    assert trailer == "Modelops-Gate-Override: a baseline for the latency tests"
    message = f"register churn v1.2.0: hist_gradient_boosting\ngate: worse ...\n\n{trailer}"
    assert tags.override_reason(message) == "a baseline for the latency tests"
    assert tags.override_reason("register churn v1.2.0: mentions Modelops-Gate-Override") is None
    with pytest.raises(RegistryError, match="--reason must say why"):
        tags.override_trailer(" \n ")
