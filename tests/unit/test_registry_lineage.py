"""Reading what a version is made of, typed: cards as `card.Card`, the serving contract between two
cards, params as DVC names them; and the registry command starting without the model's libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from modelops.card import Artifact, Card, DataFingerprint, ReferenceSample
from modelops.registry import lineage
from modelops.schema import CategoricalFeature, Feature, FeatureSchema, NumericFeature, Target

AGE = NumericFeature(name="age", dtype="integer", nullable=True, min=18.0)
PLAN = CategoricalFeature(name="plan", categories=["a", "b"], nullable=False)


def card(features: list[Feature], classes: list[str | int]) -> Card:
    return Card(
        name="churn",
        estimator="hist_gradient_boosting",
        hyperparameters={"max_iter": 5},
        preprocess={"scale": True},
        seed=7,
        feature_schema=FeatureSchema(
            features=features, target=Target(name="churned", classes=classes, positive=1)
        ),
        classes=classes,
        data={"raw": DataFingerprint(path="data/raw/customers.parquet", md5="a" * 32)},
        artifact=Artifact(path="model.joblib", sha256="b" * 64, md5="c" * 32, bytes=10),
        libraries={"python": "3.11.7"},
        reference=ReferenceSample(rows=[{"age": 30, "plan": "a"}], probabilities=[[0.2, 0.8]]),
    )


CARD = card([AGE, PLAN], [0, 1])


# ------------------------------------------------------------------------------ reading cards


def test_a_committed_card_is_read_as_a_card() -> None:
    blob = msgspec.json.encode(CARD)
    assert lineage.read_card(blob) == (CARD, None)
    assert lineage.read_card(None) == (None, None)  # the commit has no card


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda c: c.pop("reference"), "missing required field `reference`"),
        (lambda c: c.update(lineage={"data": {}}), "unknown field `lineage`"),
        (lambda c: c["artifact"].update(bytes="ten"), "Expected `int`, got `str`"),
    ],
)
def test_a_card_of_another_format_is_unreadable_with_the_reason(
    edit: Callable[[dict[str, Any]], object], reason: str
) -> None:
    old = msgspec.to_builtins(CARD)
    edit(old)
    found, why = lineage.read_card(json.dumps(old).encode())
    assert found is None
    assert why is not None and reason in why


def test_a_card_that_is_not_json_is_unreadable() -> None:
    found, why = lineage.read_card(b"{ not json")
    assert found is None and why is not None and "malformed" in why


# ----------------------------------------------------------------------------- the contract


def test_contract_ignores_what_retraining_on_new_data_changes() -> None:
    retrained = card(
        [
            msgspec.structs.replace(AGE, min=0.0, nullable=False),
            msgspec.structs.replace(PLAN, categories=["a", "b", "c"]),
        ],
        [0, 1],
    )
    assert lineage.contract_changes(CARD, retrained) == []


def test_contract_names_every_change_a_client_would_feel() -> None:
    new = card(
        [
            msgspec.structs.replace(AGE, dtype="float"),
            msgspec.structs.replace(PLAN, name="tier"),
        ],
        [0, 1, 2],
    )
    assert lineage.contract_changes(CARD, new) == [
        "added feature 'tier'",
        "removed feature 'plan'",
        "feature 'age' changed from numeric/integer to numeric/float",
        "classes changed from [0, 1] to [0, 1, 2]",
    ]
    assert lineage.contract_changes(None, new) == []


def test_a_feature_changing_kind_is_a_contract_change() -> None:
    new = card([CategoricalFeature(name="age", categories=["young"], nullable=True), PLAN], [0, 1])
    assert lineage.contract_changes(CARD, new) == [
        "feature 'age' changed from numeric/integer to categorical"
    ]


def test_flatten_names_params_the_way_dvc_does() -> None:
    assert lineage.flatten({"train": {"hgb": {"max_iter": 5}, "x": []}, "seed": 1}) == {
        "train.hgb.max_iter": 5,
        "train.x": [],
        "seed": 1,
    }


# ------------------------------------------------------------------------------ start-up cost


def test_the_registry_command_starts_without_the_models_libraries() -> None:
    # `modelops registry --help` (and every registry command until it decodes a card) must not wait
    # for scikit-learn, pandas, numpy, GTO or DVC.
    code = (
        "import contextlib, io, sys\n"
        "from modelops import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['registry', '--help'])\n"
        "heavy = ('sklearn', 'pandas', 'numpy', 'joblib', 'gto', 'dvc')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
