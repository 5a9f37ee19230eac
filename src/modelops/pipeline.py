"""Schema + params in, ONE unfitted sklearn Pipeline out: the object that is trained, saved and served."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops.params import Params
from modelops.schema import FeatureSchema

MISSING_CATEGORY = "__missing__"


def build_pipeline(params: Params, schema: FeatureSchema) -> Pipeline:
    """Preprocessing for every schema feature, then the estimator chosen in `params.train`."""
    pre = params.preprocess
    numeric_steps: list[tuple[str, object]] = [
        (
            "impute",
            SimpleImputer(strategy=pre.numeric_imputer, add_indicator=pre.add_missing_indicator),
        )
    ]
    if pre.scale:
        numeric_steps.append(("scale", StandardScaler()))
    encoder = OneHotEncoder(
        handle_unknown="infrequent_if_exist" if pre.min_category_frequency else "ignore",
        min_frequency=pre.min_category_frequency,
        sparse_output=False,
        dtype="float64",
    )
    categorical_steps: list[tuple[str, object]] = [
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        ("encode", encoder),
    ]
    transformers = []
    if schema.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), [f.name for f in schema.numeric]))
    if schema.categorical:
        transformers.append(
            ("categorical", Pipeline(categorical_steps), [f.name for f in schema.categorical])
        )
    features = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("features", features), ("model", build_estimator(params))])


def fit(pipeline: Pipeline, frame: pd.DataFrame, y: npt.NDArray[Any]) -> Pipeline:
    """Fit, then make prediction bit-reproducible.

    A forest predicting with n_jobs > 1 adds the trees' probabilities in thread completion order,
    so two identical calls can differ in the last bits; fitting in parallel is reproducible (each
    tree has its own seed), so parallelism is kept for fitting and dropped for predicting.
    """
    pipeline.fit(frame, y)
    model = pipeline.named_steps["model"]
    if "n_jobs" in model.get_params():
        model.set_params(n_jobs=1)
    return pipeline


def build_estimator(params: Params) -> ClassifierMixin:
    seed = params.base.seed
    train = params.train
    if train.estimator == "hist_gradient_boosting":
        h = train.hist_gradient_boosting
        return HistGradientBoostingClassifier(
            learning_rate=h.learning_rate,
            max_iter=h.max_iter,
            max_leaf_nodes=h.max_leaf_nodes,
            max_depth=h.max_depth,
            min_samples_leaf=h.min_samples_leaf,
            l2_regularization=h.l2_regularization,
            class_weight=h.class_weight,
            early_stopping=False,
            random_state=seed,
        )
    if train.estimator == "logistic_regression":
        lr = train.logistic_regression
        return LogisticRegression(
            C=lr.C, max_iter=lr.max_iter, class_weight=lr.class_weight, random_state=seed
        )
    rf = train.random_forest
    return RandomForestClassifier(
        n_estimators=rf.n_estimators,
        max_depth=rf.max_depth,
        min_samples_leaf=rf.min_samples_leaf,
        max_features=rf.max_features,
        class_weight=rf.class_weight,
        n_jobs=rf.n_jobs,
        random_state=seed,
    )
