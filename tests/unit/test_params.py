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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "data: {features: {age: {kind: numeric, max: .inf}}}",
            "data.features.age.max: must be a finite number, got inf",
        ),
        (
            "data: {features: {age: {kind: numeric, min: .nan}}}",
            "data.features.age.min: must be a finite number, got nan",
        ),
        (
            "data: {features: {age: {kind: numeric, min: -.inf, max: 3}}}",
            "data.features.age.min: must be a finite number, got -inf",
        ),
        (
            "train: {logistic_regression: {C: .inf}}",
            "train.logistic_regression.C: must be a finite number, got inf",
        ),
        (
            "train: {hist_gradient_boosting: {l2_regularization: .inf}}",
            "train.hist_gradient_boosting.l2_regularization",
        ),
        ("drift: {significant: .inf}", "drift.significant"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        params.parse(text)
    assert message in str(info.value)


DUPLICATE_TOP = """\
base:
  seed: 1
train:
  estimator: random_forest
  random_forest:
    n_estimators: 10
evaluate:
  threshold: 0.3
train:
  reference_rows: 5
"""

DUPLICATE_NESTED = """\
train:
  random_forest:
    n_jobs: 1
    max_depth: 3
    n_jobs: 2
"""

DUPLICATE_FEATURE = """\
data:
  features:
    age: {kind: numeric}
    tenure: {kind: numeric}
    age: {kind: categorical}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DUPLICATE_TOP, "params.yaml: duplicate key 'train' at line 9 (first at line 3)"),
        (
            DUPLICATE_NESTED,
            "params.yaml: duplicate key 'train.random_forest.n_jobs' at line 5 (first at line 3)",
        ),
        (
            DUPLICATE_FEATURE,
            "params.yaml: duplicate key 'data.features.age' at line 5 (first at line 3)",
        ),
        ("data: {features: {a: {kind: numeric, kind: categorical}}}", "'data.features.a.kind'"),
    ],
)
def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(text: str, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        params.parse(text)
    assert message in str(info.value)


def test_duplicate_keys_in_the_params_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(DUPLICATE_TOP)
    with pytest.raises(ParamsError, match=r"params.yaml: duplicate key 'train' at line 9"):
        params.load(path)


def test_a_target_listed_in_drop_is_refused() -> None:
    with pytest.raises(ParamsError) as info:
        params.parse("data: {target: churned, drop: [customer_id, churned]}")
    assert "data.drop: 'churned' is the target (data.target)" in str(info.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("train: {random_forest: {n_jobs: 100000}}", "$.train.random_forest.n_jobs"),
        ("train: {random_forest: {n_jobs: 0}}", "n_jobs must be -1 (every core) or 1..256, not 0"),
        ("train: {random_forest: {max_depth: 100000}}", "$.train.random_forest.max_depth"),
        ("train: {hist_gradient_boosting: {max_leaf_nodes: 10000000}}", "max_leaf_nodes"),
        ("train: {logistic_regression: {max_iter: 1000000000}}", "logistic_regression.max_iter"),
        ("evaluate: {importance_max_rows: 1000000000}", "$.evaluate.importance_max_rows"),
        ("drift: {significant: 1000}", "$.drift.significant"),
        ("preprocess: {min_category_frequency: 1000000000}", "min_category_frequency"),
    ],
)
def test_numbers_a_typo_could_make_absurd_are_bounded(text: str, named: str) -> None:
    with pytest.raises(ParamsError) as info:
        params.parse(text)
    assert named in str(info.value)


def test_random_forest_may_use_every_core() -> None:
    assert params.parse("train: {random_forest: {n_jobs: -1}}").train.random_forest.n_jobs == -1
