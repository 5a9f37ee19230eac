from __future__ import annotations

from pathlib import Path

import pytest

from modelops import params
from modelops.errors import ParamsError
from tests.conftest import REPO


def test_repository_params_load_into_typed_structs() -> None:
    p = params.load(REPO / "params.yaml")
    assert p.base.model_name == "churn"
    assert p.train.estimator == "hist_gradient_boosting"
    assert 20_000 <= p.generate.n_rows <= 50_000
    assert p.data.features["contract"].strict is True


def test_chosen_estimator_hyperparameters_are_what_the_card_records() -> None:
    p = params.parse("train: {estimator: logistic_regression, logistic_regression: {C: 0.5}}")
    assert p.train.hyperparameters() == {"C": 0.5, "max_iter": 2000, "class_weight": None}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("train: {lerning_rate: 0.1}", "`lerning_rate` - at `$.train`"),
        (
            "train: {hist_gradient_boosting: {learning_rate: 2}}",
            "$.train.hist_gradient_boosting.learning_rate",
        ),
        ("data: {test_size: 1.5}", "$.data.test_size"),
        ("train: {estimator: xgboost}", "$.train.estimator"),
        ("base: {seed: -1}", "$.base.seed"),
        ("generate: {n_rows: 10}", "$.generate.n_rows"),
        ("nonsense: 1", "`nonsense`"),
    ],
)
def test_unknown_key_or_out_of_range_value_is_an_error_naming_it(text: str, named: str) -> None:
    with pytest.raises(ParamsError) as info:
        params.parse(text)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (
            "{x: {kind: categorical, strict: true}}",
            "data.features.x: strict=true needs the list of categories",
        ),
        (
            "{x: {kind: categorical, min: 0}}",
            "data.features.x: min/max/dtype apply to numeric features only",
        ),
        (
            "{x: {kind: numeric, categories: [a]}}",
            "data.features.x: categories/strict apply to categorical",
        ),
        (
            "{x: {kind: numeric, min: 5, max: 1}}",
            "data.features.x: min 5.0 is greater than max 1.0",
        ),
        ("{churned: {kind: numeric}}", "data.features.churned: 'churned' is the target"),
        ("{x: {kind: categorical, categories: [a, a]}}", "categories contain duplicates"),
        ("{x: {kind: text}}", "data.features.x: Invalid enum value 'text' - at `$.kind`"),
    ],
)
def test_inconsistent_feature_declarations_are_refused(features: str, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        params.parse(f"data: {{features: {features}}}")
    assert message in str(info.value)


def test_malformed_yaml_and_missing_file_say_which_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [\n")
    with pytest.raises(ParamsError, match=r"params.yaml: not valid YAML"):
        params.load(bad)
    with pytest.raises(ParamsError, match=r"nowhere.yaml: file not found"):
        params.load(tmp_path / "nowhere.yaml")
