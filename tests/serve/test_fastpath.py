"""The fast path derived from a fitted Pipeline gives the Pipeline's probabilities, or refuses."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

from modelops.dataset import split
from modelops.fitted import records
from modelops.params import Params
from modelops.pipeline import build_pipeline
from modelops.schema import FeatureSchema, frame_from_records, infer_and_validate
from modelops.serve import fastpath
from modelops.synthetic import generate_customers

TOL = 1e-9
ESTIMATORS = ("hist_gradient_boosting", "logistic_regression", "random_forest")


def make_params(estimator: str, preprocess: dict[str, Any] | None = None, **data: Any) -> Params:
    return msgspec.convert(
        {
            "base": {"seed": 7},
            "data": {
                "drop": ["customer_id"],
                "min_rows_per_class": 20,
                "features": {
                    "contract": {
                        "kind": "categorical",
                        "categories": ["month-to-month", "one_year", "two_year"],
                        "strict": True,
                    }
                },
                **data,
            },
            "preprocess": preprocess or {},
            "train": {
                "estimator": estimator,
                "hist_gradient_boosting": {"max_iter": 25, "min_samples_leaf": 20},
                "random_forest": {"n_estimators": 15, "n_jobs": 1},
            },
        },
        Params,
    )


def train(
    params: Params, raw: pd.DataFrame
) -> tuple[Pipeline, FeatureSchema, pd.DataFrame, pd.DataFrame]:
    schema, clean = infer_and_validate(raw, params.data, "synthetic")
    train_frame, test = split(clean, schema.target.name, 0.3, params.base.seed)
    pipeline = build_pipeline(params, schema)
    pipeline.fit(schema.to_model_frame(train_frame), schema.target_array(train_frame))
    return pipeline, schema, train_frame, test


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return generate_customers(2000, seed=11)


def hostile_records(schema: FeatureSchema, test: pd.DataFrame) -> list[dict[str, Any]]:
    """Test rows, plus rows with every nullable value missing and unseen lenient categories."""
    recs = records(schema, test)
    nullable = [f.name for f in schema.features if f.nullable]
    lenient = [f.name for f in schema.categorical if not f.strict]
    extra = [{**r, **dict.fromkeys(nullable)} for r in recs[:40]]
    extra += [{**r, **dict.fromkeys(lenient, "never-seen")} for r in recs[40:80]]
    return recs + extra


def assert_matches(pipeline: Pipeline, schema: FeatureSchema, recs: list[dict[str, Any]]) -> None:
    fast = fastpath.derive(pipeline, schema)
    rows = fastpath.rows_from_records(schema, recs)
    want = pipeline.predict_proba(frame_from_records(schema, recs))
    whole = fast.predict_proba(rows)
    np.testing.assert_allclose(whole, want, rtol=0, atol=TOL)
    singles = np.vstack([fast.predict_proba(rows[i : i + 1]) for i in range(0, len(rows), 7)])
    np.testing.assert_allclose(singles, want[::7], rtol=0, atol=TOL)
    small = np.vstack(
        [fast.predict_proba(rows[i : i + 5]) for i in range(0, 200, 5)]
    )  # batches under the tree-walk limit
    np.testing.assert_allclose(small, want[:200], rtol=0, atol=TOL)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fastpath_equals_pipeline_with_missing_and_unseen_values(
    estimator: str, customers: pd.DataFrame
) -> None:
    pipeline, schema, _, test = train(make_params(estimator), customers)
    recs = hostile_records(schema, test)
    assert any(v is None for r in recs[: len(test)] for v in r.values())
    assert_matches(pipeline, schema, recs)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fastpath_equals_pipeline_with_infrequent_categories(
    estimator: str, customers: pd.DataFrame
) -> None:
    params = make_params(estimator, {"min_category_frequency": 150})
    pipeline, schema, _, test = train(params, customers)
    encoder = pipeline.named_steps["features"].named_transformers_["categorical"][-1]
    assert any(c is not None for c in encoder.infrequent_categories_)
    assert_matches(pipeline, schema, hostile_records(schema, test))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fastpath_equals_pipeline_trained_without_missing_values(
    estimator: str, customers: pd.DataFrame
) -> None:
    complete = customers.dropna().reset_index(drop=True)
    params = make_params(estimator, {"numeric_imputer": "mean"})
    pipeline, schema, _, test = train(params, complete)
    # No column had gaps at fit time, so no indicator columns; gaps at serve time are still imputed.
    recs = hostile_records(schema, test)
    recs += [{**r, "age": None, "tenure_months": None} for r in recs[:20]]
    assert_matches(pipeline, schema, recs)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fastpath_equals_pipeline_for_a_multiclass_target(
    estimator: str, customers: pd.DataFrame
) -> None:
    params = make_params(estimator, {"add_missing_indicator": False}, target="plan")
    pipeline, schema, _, test = train(params, customers.drop(columns=["churned"]))
    assert len(schema.target.classes) == 5
    assert_matches(pipeline, schema, hostile_records(schema, test))


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "random_forest"])
def test_fastpath_equals_pipeline_without_a_scaler(estimator: str, customers: pd.DataFrame) -> None:
    pipeline, schema, _, test = train(make_params(estimator, {"scale": False}), customers)
    assert_matches(pipeline, schema, hostile_records(schema, test))


def test_verify_proves_every_variant_on_the_probe_rows(customers: pd.DataFrame) -> None:
    pipeline, schema, train_frame, _ = train(make_params("hist_gradient_boosting"), customers)
    fast = fastpath.derive(pipeline, schema)
    probes = fastpath.probe_records(schema, records(schema, train_frame.head(8)))
    assert len(probes) > 8 * 3
    assert fastpath.verify(fast, pipeline, schema, probes) <= TOL
    assert "HistGradientBoostingClassifier trees walked in numpy" in fast.description
    # Small batches never call into the estimator's compiled code; large ones do.
    assert fast.numpy_only(1) and fast.numpy_only(fastpath.TREE_WALK_MAX_ROWS)
    assert not fast.numpy_only(fastpath.TREE_WALK_MAX_ROWS + 1)


@pytest.mark.parametrize("target", ["churned", "plan"])
def test_large_batches_get_the_estimators_own_bits(target: str, customers: pd.DataFrame) -> None:
    # Batches past the walk go through HistGradientBoosting's compiled trees without its per-call
    # checks: the same arithmetic in the same order, so not close but equal.
    params = make_params("hist_gradient_boosting", {"add_missing_indicator": False}, target=target)
    other = "plan" if target == "churned" else "churned"
    pipeline, schema, _, test = train(params, customers.drop(columns=[other]))
    fast = fastpath.derive(pipeline, schema)
    assert "rows: the estimator's compiled trees" in fast.description
    rows = fastpath.rows_from_records(schema, hostile_records(schema, test))
    assert len(rows) > fastpath.TREE_WALK_MAX_ROWS
    want = pipeline.named_steps["model"].predict_proba(fast.transform(rows))
    np.testing.assert_array_equal(fast.predict_proba(rows), want)


def test_verify_refuses_a_fast_path_that_drifted_from_the_pipeline(customers: pd.DataFrame) -> None:
    pipeline, schema, train_frame, _ = train(make_params("logistic_regression"), customers)
    fast = fastpath.derive(pipeline, schema)
    scaler = pipeline.named_steps["features"].named_transformers_["numeric"].named_steps["scale"]
    scaler.mean_ = scaler.mean_ + 1e-3  # the pipeline changes after the fast path was derived
    with pytest.raises(fastpath.UnsupportedPipeline, match=r"max \|Δp\|"):
        fastpath.verify(fast, pipeline, schema, records(schema, train_frame.head(16)))


def test_derive_names_a_step_it_does_not_know(customers: pd.DataFrame) -> None:
    pipeline, schema, train_frame, _ = train(make_params("logistic_regression"), customers)
    numeric = pipeline.named_steps["features"].named_transformers_["numeric"]
    numeric.steps[-1] = (
        "scale",
        MinMaxScaler().fit(
            numeric[:-1].transform(
                schema.to_model_frame(train_frame)[[f.name for f in schema.numeric]]
            )
        ),
    )
    with pytest.raises(fastpath.UnsupportedPipeline, match=r"'numeric/scale' is a MinMaxScaler"):
        fastpath.derive(pipeline, schema)


def test_derive_refuses_an_encoder_that_drops_a_category(customers: pd.DataFrame) -> None:
    pipeline, schema, train_frame, _ = train(make_params("logistic_regression"), customers)
    categorical = pipeline.named_steps["features"].named_transformers_["categorical"]
    frame = schema.to_model_frame(train_frame)[[f.name for f in schema.categorical]]
    encoder = OneHotEncoder(drop="first", sparse_output=False).fit(
        categorical[:-1].transform(frame)
    )
    categorical.steps[-1] = ("encode", encoder)
    with pytest.raises(fastpath.UnsupportedPipeline, match="drops a category"):
        fastpath.derive(pipeline, schema)


def test_derive_refuses_something_that_is_not_a_pipeline(customers: pd.DataFrame) -> None:
    pipeline, schema, _, _ = train(make_params("logistic_regression"), customers)
    with pytest.raises(fastpath.UnsupportedPipeline, match="not a Pipeline"):
        fastpath.derive(pipeline.named_steps["model"], schema)


# --------------------------------------------------------------------------- scikit-learn upgrades
# The fast path reads HistGradientBoosting's private tree records. A scikit-learn release may rename
# or repurpose their fields while the estimator itself keeps predicting the same; renaming a field
# of the node dtype in place reproduces exactly that (scikit-learn's compiled code reads the records
# by position, not by name).


def rename_node_fields(pipeline: Pipeline, renames: dict[str, str]) -> None:
    """Every tree's node records viewed through a copy of their dtype with fields renamed (the
    dtype scikit-learn builds new trees with stays as it is)."""
    estimator = pipeline.named_steps["model"]
    old = estimator._predictors[0][0].nodes.dtype
    new = np.dtype(
        {
            "names": [renames.get(name, name) for name in old.names],
            "formats": [old.fields[name][0] for name in old.names],
            "offsets": [old.fields[name][1] for name in old.names],
            "itemsize": old.itemsize,
        }
    )
    for iteration in estimator._predictors:
        for predictor in iteration:
            predictor.nodes = predictor.nodes.view(new)


def test_a_private_field_gone_falls_back_to_the_estimator_not_a_crash(
    customers: pd.DataFrame,
) -> None:
    pipeline, schema, train_frame, test = train(make_params("hist_gradient_boosting"), customers)
    recs = records(schema, test)
    before = pipeline.predict_proba(frame_from_records(schema, recs))
    rename_node_fields(pipeline, {"num_threshold": "threshold_of_a_future_release"})
    np.testing.assert_array_equal(pipeline.predict_proba(frame_from_records(schema, recs)), before)

    fast = fastpath.derive(pipeline, schema)
    assert "trees not walked" in fast.description and "num_threshold" in fast.description
    assert not fast.numpy_only(1)  # the estimator's own compiled code scores every batch
    probes = fastpath.probe_records(schema, records(schema, train_frame.head(8)))
    assert fastpath.verify(fast, pipeline, schema, probes) <= TOL
    assert_matches(pipeline, schema, recs)


def test_a_compiled_function_moved_sends_large_batches_to_predict_proba(
    customers: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.ensemble._hist_gradient_boosting import _predictor

    pipeline, schema, _, test = train(make_params("hist_gradient_boosting"), customers)
    monkeypatch.delattr(_predictor, "_predict_from_raw_data")  # a release that moved it
    fast = fastpath.derive(pipeline, schema)
    assert "rows: the estimator's predict_proba" in fast.description
    assert_matches(pipeline, schema, hostile_records(schema, test))


def test_a_private_field_with_a_new_meaning_is_caught_by_verification(
    customers: pd.DataFrame,
) -> None:
    pipeline, schema, train_frame, _ = train(make_params("hist_gradient_boosting"), customers)
    rename_node_fields(pipeline, {"left": "right", "right": "left"})
    fast = fastpath.derive(pipeline, schema)  # reads every field it expects, wrongly
    probes = fastpath.probe_records(schema, records(schema, train_frame.head(8)))
    with pytest.raises(fastpath.UnsupportedPipeline, match=r"tree walk: max \|Δp\|"):
        fastpath.verify(fast, pipeline, schema, probes)
