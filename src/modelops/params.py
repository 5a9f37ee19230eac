"""params.yaml in, frozen typed parameters out; an unknown key, a repeated key, a non-finite number or
an out-of-range value is an error naming it."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from yaml.constructor import SafeConstructor

from modelops.errors import ModelopsError, ParamsError
from modelops.paths import PARAMS_FILE

Fraction = Annotated[float, msgspec.Meta(gt=0, lt=1)]
# Upper limits are far beyond any sensible value: they catch a typo (an extra zero or five), not taste.
RowCount = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
Depth = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class _Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base for every params section: immutable, and a typo in a key is an error."""


class BaseParams(_Params, frozen=True, forbid_unknown_fields=True):
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] = 20261127
    model_name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$")] = "churn"


class GenerateParams(_Params, frozen=True, forbid_unknown_fields=True):
    n_rows: Annotated[int, msgspec.Meta(ge=1000, le=5_000_000)] = 30_000
    scenario_rows: Annotated[int, msgspec.Meta(ge=100, le=1_000_000)] = 5000  # per drift scenario


class FeatureDecl(_Params, frozen=True, forbid_unknown_fields=True):
    """One feature as a user declares it in `data.features`; anything left out is inferred."""

    kind: Literal["numeric", "categorical"]
    dtype: Literal["integer", "float"] | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    strict: bool = False
    nullable: bool | None = None


class DataParams(_Params, frozen=True, forbid_unknown_fields=True):
    path: str = "data/raw/customers.parquet"
    target: str = "churned"
    positive_class: str | None = None
    drop: list[str] = msgspec.field(default_factory=list)
    # A CSV field is missing only if its whole text is one of these: pandas' own list would turn a
    # category "NA" or "null" into a gap, and "n/a" in a column of numbers into a silent null.
    na_values: list[str] = msgspec.field(default_factory=lambda: [""])
    test_size: Fraction = 0.2
    min_rows_per_class: RowCount = 50
    max_categories: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 50
    features: dict[str, FeatureDecl] = msgspec.field(default_factory=dict)


class PreprocessParams(_Params, frozen=True, forbid_unknown_fields=True):
    numeric_imputer: Literal["median", "mean"] = "median"
    add_missing_indicator: bool = True
    scale: bool = True
    min_category_frequency: RowCount | None = None


class HistGradientBoostingParams(_Params, frozen=True, forbid_unknown_fields=True):
    learning_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05
    max_iter: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 250
    max_leaf_nodes: Annotated[int, msgspec.Meta(ge=2, le=100_000)] = 8
    max_depth: Depth | None = None
    min_samples_leaf: RowCount = 100
    l2_regularization: Annotated[float, msgspec.Meta(ge=0, le=1e6)] = 1.0
    class_weight: Literal["balanced"] | None = None


class LogisticRegressionParams(_Params, frozen=True, forbid_unknown_fields=True):
    C: Annotated[float, msgspec.Meta(gt=0, le=1e6)] = 1.0
    max_iter: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 2000
    class_weight: Literal["balanced"] | None = None


class RandomForestParams(_Params, frozen=True, forbid_unknown_fields=True):
    n_estimators: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 300
    max_depth: Depth | None = 12
    min_samples_leaf: RowCount = 5
    max_features: Literal["sqrt", "log2"] | Annotated[float, msgspec.Meta(gt=0, le=1)] = "sqrt"
    class_weight: Literal["balanced", "balanced_subsample"] | None = None
    # sklearn's convention: -1 is every core. 0 means nothing; more than 256 is a typo.
    n_jobs: Annotated[int, msgspec.Meta(ge=-1, le=256)] = 2

    def __post_init__(self) -> None:
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be -1 (every core) or 1..256, not 0")


class TrainParams(_Params, frozen=True, forbid_unknown_fields=True):
    estimator: Literal["hist_gradient_boosting", "logistic_regression", "random_forest"] = (
        "hist_gradient_boosting"
    )
    hist_gradient_boosting: HistGradientBoostingParams = HistGradientBoostingParams()
    logistic_regression: LogisticRegressionParams = LogisticRegressionParams()
    random_forest: RandomForestParams = RandomForestParams()
    reference_rows: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32

    def hyperparameters(self) -> dict[str, object]:
        """The chosen estimator's hyperparameters, as recorded in the model card."""
        chosen: _Params = getattr(self, self.estimator)
        return msgspec.to_builtins(chosen)


class EvaluateParams(_Params, frozen=True, forbid_unknown_fields=True):
    threshold: Fraction = 0.5
    calibration_bins: Annotated[int, msgspec.Meta(ge=2, le=100)] = 10
    importance_repeats: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    importance_max_rows: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 4000


def window_can_report(window: int, min_rows: int) -> bool:
    """Whether a live drift window of `window` rows can ever report: it must hold `min_rows` rows.

    The one home of the rule for drift.window and drift.min_rows, and for whatever overrides them
    (the server's --drift-window and --drift-min-rows, a `LiveWindow` built by hand)."""
    return min_rows <= window


class DriftParams(_Params, frozen=True, forbid_unknown_fields=True):
    """The reference profile's resolution, what the drift stage reads, and when drift counts."""

    n_bins: Annotated[int, msgspec.Meta(ge=2, le=100)] = 10
    incoming: str = "data/scenarios/no_drift.parquet"  # a file, or a directory of batches
    # A PSI above 10 needs nearly all rows to move to bins that held almost none: a threshold there
    # would never fire.
    moderate: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.1
    significant: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.25
    alpha: Fraction = 0.01
    min_rows: RowCount = 300
    window: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 5000  # the server's live window

    def __post_init__(self) -> None:
        # msgspec reports these as validation errors at `$.drift`, like any out-of-range key.
        if self.moderate >= self.significant:
            raise ValueError(
                f"drift.moderate ({self.moderate}) must be below drift.significant "
                f"({self.significant})"
            )
        if not window_can_report(self.window, self.min_rows):
            raise ValueError(
                f"drift.min_rows ({self.min_rows}) must not exceed drift.window ({self.window})"
            )


class GateParams(_Params, frozen=True, forbid_unknown_fields=True):
    """The champion gate: which stage's model a candidate must not be worse than, by which metric
    (evaluation.DIRECTIONS says which way is better) and with what tolerance and confidence."""

    against: str = "prod"  # a registry stage name (checked by the registry's stage-name rule)
    metric: str = "roc_auc"  # a metric evaluate writes for this target
    # In the metric's own units: how much worse a candidate may be and still count as no worse.
    min_delta: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.005
    confidence: Annotated[float, msgspec.Meta(ge=0.5, le=0.999)] = 0.95
    # Fewer resamples cannot place the tails of a 95% interval.
    bootstrap: Annotated[int, msgspec.Meta(ge=100, le=100_000)] = 1000


PerformanceMetric = Literal["roc_auc", "log_loss", "brier", "accuracy"]
WINDOW_PATTERN = r"^[1-9][0-9]{0,3}[hdw]$"  # a time window: 12h, 1d, 7d, 2w


class PerformanceParams(_Params, frozen=True, forbid_unknown_fields=True):
    """What the performance stage joins, its time windows, and when a window counts as degraded
    (the rule: modelops.performance.judge)."""

    predictions: str = "data/demo/predictions"  # a prediction-log segment or a directory of them
    outcomes: str = "data/demo/outcomes.csv"  # an outcomes file, or a directory of them/feedback
    window: Annotated[str, msgspec.Meta(pattern=WINDOW_PATTERN)] = "7d"
    metric: PerformanceMetric = "roc_auc"
    max_drop: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.05
    min_labels: RowCount = 200
    confidence: Annotated[float, msgspec.Meta(ge=0.5, lt=1)] = 0.95
    resamples: Annotated[int, msgspec.Meta(ge=50, le=100_000)] = 200


class Params(_Params, frozen=True, forbid_unknown_fields=True):
    base: BaseParams = BaseParams()
    generate: GenerateParams = GenerateParams()
    data: DataParams = DataParams()
    preprocess: PreprocessParams = PreprocessParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    drift: DriftParams = DriftParams()
    gate: GateParams = GateParams()
    performance: PerformanceParams = PerformanceParams()


def parse(text: bytes | str, source: str = str(PARAMS_FILE)) -> Params:
    """Decode params from YAML text; every error names the offending key."""
    tree = load_yaml(text, source, ParamsError)
    _check_finite(tree, source, "")
    try:
        # As msgspec.yaml.decode converts: YAML timestamps stay dates, so they fail as non-strings.
        params = msgspec.convert(
            tree, type=Params, builtin_types=(datetime.datetime, datetime.date)
        )
    except msgspec.ValidationError as exc:
        raise ParamsError(f"{source}: {_name_feature(tree, exc)}") from None
    _check_features(params.data, source)
    return params


def load(path: Path | str = PARAMS_FILE) -> Params:
    """Load and validate params.yaml (relative to the working directory by default)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    return parse(text, str(path))


def load_yaml(text: bytes | str, source: str, error: type[ModelopsError]) -> Any:
    """A YAML document a person writes, as Python objects; a key repeated within one mapping is an
    `error` naming its path and both lines (PyYAML would silently keep the last one)."""
    loader = yaml.CSafeLoader(text) if yaml.__with_libyaml__ else yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique_keys(loader, node, source, error, "", set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _check_unique_keys(
    loader: SafeConstructor,
    node: yaml.Node,
    source: str,
    error: type[ModelopsError],
    path: str,
    seen: set[int],
) -> None:
    if id(node) in seen:  # an alias: checked where its anchor is (and it may contain itself)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(loader, item, source, error, f"{path}[{i}]", seen)
    if not isinstance(node, yaml.MappingNode):
        return
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        where = f"{path}.{key}" if path else str(key)
        line = key_node.start_mark.line + 1
        if key is not None and key in first_line:
            raise error(
                f"{source}: duplicate key '{where}' at line {line} (first at line {first_line[key]})"
            )
        first_line[key] = line
        _check_unique_keys(loader, value_node, source, error, where, seen)


def _check_finite(tree: Any, source: str, path: str, seen: set[int] | None = None) -> None:
    """No parameter means anything at infinity or NaN, and JSON (the card, metrics) cannot hold them."""
    if isinstance(tree, float) and not math.isfinite(tree):
        raise ParamsError(f"{source}: {path}: must be a finite number, got {tree}")
    seen = set() if seen is None else seen
    if not isinstance(tree, dict | list) or id(tree) in seen:  # YAML aliases may nest themselves
        return
    seen.add(id(tree))
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        where = (
            f"{path}[{key}]" if isinstance(tree, list) else f"{path}.{key}" if path else str(key)
        )
        _check_finite(value, source, where, seen)


def _name_feature(tree: Any, exc: msgspec.ValidationError) -> str:
    """msgspec reports a bad feature declaration as `features[...]`; find and name the feature."""
    if "$.data.features[...]" not in str(exc):
        return str(exc)
    features = (tree.get("data") or {}).get("features") or {}
    for name, decl in features.items():
        try:
            msgspec.convert(decl, type=FeatureDecl)
        except msgspec.ValidationError as inner:
            return f"data.features.{name}: {inner}"
    return str(exc)


def _check_features(data: DataParams, source: str) -> None:
    if data.target in data.drop:
        raise ParamsError(
            f"{source}: data.drop: '{data.target}' is the target (data.target); "
            "remove it from data.drop"
        )
    for name, decl in data.features.items():
        where = f"{source}: data.features.{name}"
        if name == data.target:
            raise ParamsError(f"{where}: '{name}' is the target, not a feature")
        if name in data.drop:
            raise ParamsError(f"{where}: '{name}' is both declared and listed in data.drop")
        problem = (
            _categorical_problem(decl) if decl.kind == "categorical" else _numeric_problem(decl)
        )
        if problem is not None:
            raise ParamsError(f"{where}: {problem}")


def _categorical_problem(decl: FeatureDecl) -> str | None:
    if decl.min is not None or decl.max is not None or decl.dtype is not None:
        return "min/max/dtype apply to numeric features only"
    if decl.strict and not decl.categories:
        return "strict=true needs the list of categories"
    if decl.categories is not None and len(set(decl.categories)) != len(decl.categories):
        return "categories contain duplicates"
    return None


def _numeric_problem(decl: FeatureDecl) -> str | None:
    if decl.categories is not None or decl.strict:
        return "categories/strict apply to categorical features only"
    if decl.min is not None and decl.max is not None and decl.min > decl.max:
        return f"min {decl.min} is greater than max {decl.max}"
    return None
