"""The request contract is the card's schema: types, limits, nullability, strictness; and its errors
name every problem by path without repeating what was sent."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from modelops.errors import DataValidationError
from modelops.schema import CategoricalFeature, FeatureSchema, NumericFeature, Target
from modelops.serve import openapi
from modelops.serve.contract import MAX_CATEGORY_CHARS, Contract

SCHEMA = FeatureSchema(
    features=[
        NumericFeature("tenure", "integer", nullable=False, min=0, max=120),
        NumericFeature("charges", "float", nullable=True),
        CategoricalFeature("contract", ["monthly", "yearly"], nullable=False, strict=True),
        CategoricalFeature("region", ["north", "south"], nullable=True, strict=False),
        NumericFeature("not an identifier!", "float", nullable=False, min=-1, max=1),
    ],
    target=Target("churned", [0, 1], 1),
)
GOOD: dict[str, Any] = {
    "tenure": 12,
    "charges": 70.5,
    "contract": "monthly",
    "region": "north",
    "not an identifier!": 0.5,
}


def decode(contract: Contract, body: Any) -> list[tuple[Any, ...]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    instances, rows, ids = contract.decode(raw)
    # The Structs encode back to the features sent: the prediction log writes them as `inputs`.
    sent = json.loads(raw)["instances"]
    assert [json.loads(msgspec.json.encode(i)) for i in instances] == [
        {k: v for k, v in x.items() if k != "id"} for x in sent
    ]
    assert ids is None or ids == [x.get("id") for x in sent]
    return rows


def test_an_instance_id_is_kept_apart_from_the_row(contract: Contract) -> None:
    body = {"instances": [{**GOOD, "id": "a-1"}, GOOD, {"id": "a-3", **GOOD}]}
    decoded = contract.decode(json.dumps(body).encode())
    assert decoded.ids == ["a-1", None, "a-3"]
    assert decoded.rows == [(12.0, 70.5, "monthly", "north", 0.5)] * 3
    assert contract.decode(json.dumps({"instances": [GOOD]}).encode()).ids is None


def test_a_feature_named_id_is_a_feature_and_no_instance_id_is_taken() -> None:
    schema = FeatureSchema(
        features=[NumericFeature("id", "float", False), NumericFeature("x", "float", False)],
        target=Target("y", [0, 1], 1),
    )
    contract = Contract(schema, 10)
    assert not contract.takes_ids
    decoded = contract.decode(b'{"instances": [{"id": 4.5, "x": 1}]}')
    assert decoded.rows == [(4.5, 1.0)] and decoded.ids is None


def problems(contract: Contract, body: Any) -> list[tuple[str, str]]:
    with pytest.raises(DataValidationError) as info:
        decode(contract, body)
    return [(issue.column, issue.kind) for issue in info.value.issues]


@pytest.fixture
def contract() -> Contract:
    return Contract(SCHEMA, max_instances=5)


def test_rows_come_back_in_schema_order_with_none_for_missing(contract: Contract) -> None:
    rows = decode(contract, {"instances": [GOOD, {**GOOD, "charges": None, "region": None}]})
    assert rows == [
        (12.0, 70.5, "monthly", "north", 0.5),
        (12.0, None, "monthly", None, 0.5),
    ]


def test_integer_features_take_whole_numbers_written_either_way(contract: Contract) -> None:
    assert decode(contract, {"instances": [{**GOOD, "tenure": 12.0}]})[0][0] == 12.0
    assert problems(contract, {"instances": [{**GOOD, "tenure": 12.5}]}) == [
        ("$.instances[0].tenure", "Expected a whole number")
    ]


def test_limits_nullability_and_types_come_from_the_schema(contract: Contract) -> None:
    bad = {**GOOD, "tenure": 121, "contract": None, "charges": "70", "not an identifier!": -2}
    assert problems(contract, {"instances": [bad]}) == [
        ("$.instances[0].tenure", "Expected `number` <= 120.0"),
        ("$.instances[0].charges", "Expected `number | null`, got `str`"),
        ("$.instances[0].contract", "Expected `str`, got `null`"),
        ("$.instances[0].not an identifier!", "Expected `number` >= -1.0"),
    ]


def test_unknown_and_missing_fields_are_rejected(contract: Contract) -> None:
    instance = {k: v for k, v in GOOD.items() if k != "region"} | {"surprise": 1}
    assert problems(contract, {"instances": [instance], "extra": True}) == [
        ("$.extra", "unknown field"),
        ("$.instances[0].surprise", "unknown field"),
        ("$.instances[0].region", "required field missing"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [{"tenure": NaN}]}',
        b'{"instances": [{"tenure": Infinity}]}',
        b'{"instances": [{"charges": -Infinity}]}',
    ],
)
def test_nan_and_infinity_are_not_json_and_are_rejected(contract: Contract, body: bytes) -> None:
    [(field, message)] = problems(contract, body)
    assert field == "$"
    assert message.startswith("not valid JSON")


def test_numbers_beyond_float_range_or_2_53_are_rejected(contract: Contract) -> None:
    assert problems(contract, {"instances": [{**GOOD, "charges": 2**53}]}) == [
        ("$.instances[0].charges", "Expected `number` < 9007199254740992.0")
    ]
    huge = json.dumps({"instances": [GOOD]}).replace("70.5", "1e400").encode()
    assert problems(contract, huge) == [("$.instances[0].charges", "Number out of range")]


def test_strict_categories_reject_unknown_values_lenient_ones_count_them(
    contract: Contract,
) -> None:
    rows = decode(contract, {"instances": [{**GOOD, "region": "east"}, GOOD]})
    assert contract.unseen_categories(rows) == {"region": 1}
    assert problems(contract, {"instances": [{**GOOD, "contract": "weekly"}]}) == [
        ("$.instances[0].contract", "not one of the known categories of this strict feature")
    ]


def test_errors_never_repeat_the_value_that_was_sent(contract: Contract) -> None:
    secret = "SECRET<script>alert(1)</script>"
    bad = {**GOOD, "contract": secret, "tenure": secret, "region": secret * 20}
    with pytest.raises(DataValidationError) as info:
        decode(contract, {"instances": [bad]})
    assert "SECRET" not in str(info.value)
    fields = [issue.column for issue in info.value.issues]
    assert fields == ["$.instances[0].tenure", "$.instances[0].contract", "$.instances[0].region"]
    assert f"length <= {MAX_CATEGORY_CHARS}" in info.value.issues[2].kind


def test_every_problem_is_listed_across_instances(contract: Contract) -> None:
    body = {"instances": [{**GOOD, "tenure": -1}, GOOD, "not an object", {**GOOD, "charges": True}]}
    assert problems(contract, body) == [
        ("$.instances[0].tenure", "Expected `number` >= 0.0"),
        ("$.instances[2]", "Expected `object`, got `str`"),
        ("$.instances[3].charges", "Expected `number | null`, got `bool`"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instances": []}, [("$.instances", "has 0 instances; send 1 to 5")]),
        ({"instances": [GOOD] * 6}, [("$.instances", "has 6 instances; send 1 to 5")]),
        ({}, [("$.instances", "required field missing")]),
        ([GOOD], [("$", "Expected `object`, got `array`")]),
        ({"instances": {"a": 1}}, [("$.instances", "Expected `array`, got `object`")]),
    ],
)
def test_the_request_shape_is_checked(
    contract: Contract, body: Any, expected: list[tuple[str, str]]
) -> None:
    assert problems(contract, body) == expected


def test_malformed_bodies_are_described_not_echoed(contract: Contract) -> None:
    assert problems(contract, b"\xff\xfe{") == [
        ("$", "not valid JSON: JSON is malformed: invalid character (byte 0)")
    ]
    assert problems(contract, b'{"instances": [{"region": "\xff"}]}') == [("$", "not valid UTF-8")]
    [(field, message)] = problems(contract, b'{"instances": [' * 10_000)
    assert field.startswith("$")
    [(field, message)] = problems(contract, b'{"instances": [{"tenure": 1,')
    assert (field, message) == ("$", "not valid JSON: Input data was truncated")


def test_answers_name_every_class_and_encode_in_class_order() -> None:
    multiclass = msgspec.structs.replace(SCHEMA, target=Target("plan", ["basic", "plus", "pro"]))
    contract = Contract(multiclass, max_instances=5)
    [answer] = contract.predictions(["plus"], [[0.25, 0.5, 0.25]])
    assert json.loads(msgspec.json.encode(answer)) == {
        "label": "plus",
        "probabilities": {"basic": 0.25, "plus": 0.5, "pro": 0.25},
    }
    schemas = component_schemas(contract)
    assert schemas["Prediction"]["properties"]["label"]["enum"] == ["basic", "plus", "pro"]
    probabilities = schemas["Probabilities"]
    assert probabilities["required"] == ["basic", "plus", "pro"]
    assert all(probabilities["properties"][c] == {"type": "number"} for c in ["basic", "plus"])


def component_schemas(contract: Contract) -> dict[str, Any]:
    """The schemas the OpenAPI document carries for the contract's types (serve/openapi.py)."""
    types = [contract.request_type, contract.response_type]
    return msgspec.json.schema_components(types, ref_template=openapi.REF_TEMPLATE)[1]


def test_the_schema_of_the_request_type_carries_every_rule(contract: Contract) -> None:
    schemas = component_schemas(contract)
    instance = schemas["Instance"]
    assert instance["additionalProperties"] is False
    assert set(instance["required"]) == set(GOOD)
    props = instance["properties"]
    assert props["tenure"]["minimum"] == 0 and props["tenure"]["maximum"] == 120
    assert props["tenure"]["multipleOf"] == 1
    assert props["contract"]["enum"] == ["monthly", "yearly"]
    assert {"type": "null"} in props["charges"]["anyOf"]
    request = schemas["PredictRequest"]["properties"]["instances"]
    assert (request["minItems"], request["maxItems"]) == (1, 5)
