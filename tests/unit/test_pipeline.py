from __future__ import annotations

from typing import get_args

import msgspec
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modelops.errors import ParamsError
from modelops.params import Params, TrainParams, parse
from modelops.pipeline import BUILDERS, build_estimator, build_pipeline, fit
from modelops.schema import infer_and_validate
from modelops.synthetic import generate_customers

ESTIMATORS = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
}


@pytest.fixture(scope="module")
def data() -> tuple:
    p = parse("data: {drop: [customer_id]}")
    raw = generate_customers(2000, 7)
    schema, clean = infer_and_validate(raw, p.data, "synthetic")
    return schema, schema.to_model_frame(clean), schema.target_array(clean)


def with_estimator(name: str, extra: str = "") -> Params:
    return parse(
        f"base: {{seed: 11}}\ntrain: {{estimator: {name}, random_forest: {{n_estimators: 20}}}}\n{extra}"
    )


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_one_pipeline_holds_preprocessing_and_the_chosen_estimator(name: str, data: tuple) -> None:
    schema, _, _ = data
    params = with_estimator(name)
    pipeline = build_pipeline(params, schema)
    assert [step for step, _ in pipeline.steps] == ["features", "model"]
    features = pipeline.named_steps["features"]
    assert isinstance(features, ColumnTransformer)
    columns = {label: cols for label, _, cols in features.transformers}
    assert columns["numeric"] == [f.name for f in schema.numeric]
    assert columns["categorical"] == [f.name for f in schema.categorical]
    model = pipeline.named_steps["model"]
    assert isinstance(model, ESTIMATORS[name])
    assert model.random_state == 11
    for key, value in params.train.hyperparameters().items():
        assert model.get_params()[key] == value


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_pipeline_handles_missing_values_and_unseen_categories(name: str, data: tuple) -> None:
    schema, X, y = data
    pipeline = build_pipeline(with_estimator(name), schema).fit(X, y)
    odd = X.head(4).copy()
    odd.loc[odd.index[0], :] = np.nan  # every feature missing
    odd.loc[odd.index[1], "plan"] = "platinum"  # never seen in training
    proba = pipeline.predict_proba(schema.to_model_frame(odd))
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_rare_categories_are_grouped_when_min_frequency_is_set(data: tuple) -> None:
    schema, X, y = data
    params = with_estimator("logistic_regression", "preprocess: {min_category_frequency: 200}")
    pipeline = build_pipeline(params, schema).fit(X, y)
    encoder = (
        pipeline.named_steps["features"].named_transformers_["categorical"].named_steps["encode"]
    )
    region = [f.name for f in schema.categorical].index("region")
    assert encoder.infrequent_categories_[region] is not None
    unseen = schema.to_model_frame(X.head(1).assign(region="region_zz"))
    assert pipeline.predict_proba(unseen).shape == (1, 2)


def test_preprocessing_options_shape_the_numeric_branch(data: tuple) -> None:
    schema, _, _ = data
    params = msgspec.structs.replace(
        Params(), preprocess=parse("preprocess: {scale: false, numeric_imputer: mean}").preprocess
    )
    numeric = build_pipeline(params, schema).named_steps["features"].transformers[0][1]
    assert [s for s, _ in numeric.steps] == ["impute"]
    assert numeric.named_steps["impute"].strategy == "mean"


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fitting_twice_gives_bit_identical_probabilities(name: str, data: tuple) -> None:
    schema, X, y = data
    first = fit(build_pipeline(with_estimator(name), schema), X, y)
    second = fit(build_pipeline(with_estimator(name), schema), X, y)
    for _ in range(3):
        np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_schema_without_categoricals_still_builds(data: tuple) -> None:
    raw = pd.DataFrame({"x": np.arange(200.0), "y": np.tile([0, 1], 100)})
    schema, clean = infer_and_validate(raw, parse("data: {target: y, drop: []}").data, "x")
    pipeline = build_pipeline(Params(), schema).fit(
        schema.to_model_frame(clean), schema.target_array(clean)
    )
    assert pipeline.predict_proba(schema.to_model_frame(clean)).shape == (200, 2)


def test_every_estimator_name_params_accept_has_a_builder_and_no_other() -> None:
    accepted = set(get_args(msgspec.structs.fields(TrainParams)[0].type))
    assert msgspec.structs.fields(TrainParams)[0].name == "estimator"
    assert accepted == set(BUILDERS)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_estimator_gets_exactly_its_params_block(name: str) -> None:
    params = with_estimator(name)
    estimator = build_estimator(params)
    assert type(estimator) is ESTIMATORS[name]
    chosen = params.train.hyperparameters()
    assert chosen and {k: estimator.get_params()[k] for k in chosen} == chosen
    assert estimator.get_params()["random_state"] == 11


def test_a_name_without_a_builder_is_an_error_not_a_silent_forest() -> None:
    params = with_estimator("random_forest")
    unknown = msgspec.structs.replace(
        params, train=msgspec.structs.replace(params.train, estimator="gradient_boosting")
    )
    with pytest.raises(ParamsError, match=r"train.estimator: 'gradient_boosting' has no estimator"):
        build_estimator(unknown)
