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

from modelops.errors import ParamsError
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


# `train.estimator` -> the scikit-learn class and the settings modelops fixes for it. Every other
# constructor argument is the chosen estimator's block in params.yaml, field for field, plus
# `random_state` from base.seed. A name params accept but this table lacks is an error, never a
# silent default.
BUILDERS: dict[str, tuple[type[ClassifierMixin], dict[str, Any]]] = {
    # Early stopping would hold out a random part of the training data the card does not record.
    "hist_gradient_boosting": (HistGradientBoostingClassifier, {"early_stopping": False}),
    "logistic_regression": (LogisticRegression, {}),
    "random_forest": (RandomForestClassifier, {}),
}


def build_estimator(params: Params) -> ClassifierMixin:
    name = params.train.estimator
    if name not in BUILDERS:
        raise ParamsError(
            f"train.estimator: {name!r} has no estimator to build (known: {', '.join(BUILDERS)})"
        )
    kind, fixed = BUILDERS[name]
    return kind(**params.train.hyperparameters(), **fixed, random_state=params.base.seed)
