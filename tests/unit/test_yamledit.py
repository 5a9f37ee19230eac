"""Line edits of YAML a person wrote: only the edited keys' lines change, comments elsewhere stay,
and an edit that does not load back to what was meant is refused."""

from __future__ import annotations

import pytest
import yaml

from modelops import yamledit
from modelops.errors import ModelopsError
from modelops.params import parse
from tests.conftest import REPO

TEXT = """\
# header comment
base:
  seed: 1                 # the seed
  name: churn             # the name

data:
  path: a.parquet   # old path comment
  incoming: x       # a comment that goes on
                    # over two lines
  features:         # declared
    age: {kind: numeric}
    plan:
      kind: categorical
  after: 3          # stays
"""


def test_setting_a_key_changes_its_line_only_and_keeps_the_comment_column() -> None:
    edited = yamledit.set_value(TEXT, ["base", "name"], "penguins", "the registry name")
    assert edited == TEXT.replace(
        "  name: churn             # the name", "  name: penguins          # the registry name"
    )


def test_a_block_value_and_a_continued_comment_are_replaced_whole() -> None:
    edited = yamledit.set_value(TEXT, ["data", "features"], {}, "none")
    edited = yamledit.set_value(edited, ["data", "incoming"], "y", "new")
    assert yaml.safe_load(edited)["data"] == {
        "path": "a.parquet",
        "incoming": "y",
        "features": {},
        "after": 3,
    }
    assert "over two lines" not in edited and "kind: categorical" not in edited
    assert "  after: 3          # stays\n" in edited and edited.startswith("# header comment\n")


def test_values_yaml_would_misread_are_quoted() -> None:
    for value in ("yes", "1.0", "", "a: b", "#x", None, ["", "NA"], ["no"]):
        edited = yamledit.set_value(TEXT, ["data", "path"], value)
        assert yaml.safe_load(edited)["data"]["path"] == value


def test_a_missing_key_or_section_is_added_where_it_belongs() -> None:
    edited = yamledit.set_value(TEXT, ["base", "extra"], 5)
    edited = yamledit.set_value(edited, ["drift", "incoming"], "data/prepared/test.parquet")
    loaded = yaml.safe_load(edited)
    assert loaded["base"] == {"seed": 1, "name": "churn", "extra": 5}
    assert loaded["drift"] == {"incoming": "data/prepared/test.parquet"}
    assert edited.endswith("\n\ndrift:\n  incoming: data/prepared/test.parquet\n")


def test_remove_and_rename_keep_the_rest() -> None:
    lock = (  # dvc.lock's layout: sequences at their key's indentation
        "schema: '2.0'\nstages:\n  generate:\n    deps:\n    - path: a\n      md5: 1\n"
        "  prepare:\n    cmd: x\n"
    )
    removed = yamledit.remove(lock, ["stages", "generate"])
    assert yaml.safe_load(removed) == {"schema": "2.0", "stages": {"prepare": {"cmd": "x"}}}
    assert yamledit.remove(lock, ["stages", "nowhere"]) == lock
    renamed = yamledit.rename(TEXT, ["base", "name"], "label")
    assert "  label: churn             # the name\n" in renamed


def test_the_repository_params_survive_every_edit_use_data_makes() -> None:
    text = (REPO / "params.yaml").read_text()
    for key, value in [
        (["base", "model_name"], "penguins"),
        (["data", "path"], "data/raw/penguins.csv"),
        (["data", "target"], "species"),
        (["data", "positive_class"], "yes"),
        (["data", "drop"], ["penguin_id"]),
        (["data", "na_values"], ["", "NA"]),
        (["data", "features"], {}),
        (["drift", "incoming"], "data/prepared/test.parquet"),
    ]:
        text = yamledit.set_value(text, key, value, "comment")
    params = parse(text)
    assert (params.base.model_name, params.data.positive_class, params.data.features) == (
        "penguins",
        "yes",
        {},
    )
    assert params.train == parse((REPO / "params.yaml").read_bytes()).train


def test_an_edit_that_does_not_load_back_is_refused_naming_the_keys() -> None:
    flow_style = "base: {seed: 1, model_name: churn}\n"
    edited = yamledit.set_value(flow_style, ["base", "model_name"], "penguins")
    with pytest.raises(ModelopsError, match=r"params.yaml: could not change base.model_name"):
        yamledit.check(
            "params.yaml", edited, parse, parse("base: {model_name: penguins}"), ["base.model_name"]
        )
