"""THE feature schema: built from declarations + the training frame, it validates and types every frame.

`infer_and_validate` turns a raw frame and `data` params into a `FeatureSchema` and a clean frame, or
raises one `DataValidationError` listing every problem. `to_model_frame` gives the Pipeline the exact
dtypes it was trained on (float64 numerics, object categoricals with NaN for missing) wherever a frame
comes from: parquet, CSV, or JSON records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import pandas as pd
import yaml

from modelops.category import category_name
from modelops.errors import WHOLE_TABLE, DataIssue, DataValidationError, SchemaError
from modelops.params import DataParams, FeatureDecl, load_yaml

SCHEMA_VERSION = 1
_ROWS_SHOWN = 5


class NumericFeature(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="numeric", tag_field="kind"
):
    name: str
    dtype: Literal["integer", "float"]
    nullable: bool
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        for key, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(
                    f"features.{self.name}.{key}: must be a finite number, got {bound}"
                )


class CategoricalFeature(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="categorical", tag_field="kind"
):
    name: str
    categories: list[str]
    nullable: bool
    strict: bool = False


Feature = NumericFeature | CategoricalFeature


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    classes: list[str | int]
    positive: str | int | None = None  # binary targets only: the class whose probability is scored

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def scored(self) -> list[str | int]:
        """The classes whose probability is scored: see `scored_classes`."""
        return scored_classes(self.classes, self.positive)


def scored_classes(classes: Sequence[Any], positive: Any) -> list[Any]:
    """The classes whose probability is scored, plotted and profiled: the positive one for a binary
    target (when it has one), every class one-vs-rest otherwise."""
    return [positive] if len(classes) == 2 and positive is not None else list(classes)


class FeatureSchema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    features: list[Feature]
    target: Target
    schema_version: int = SCHEMA_VERSION

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[NumericFeature]:
        return [f for f in self.features if isinstance(f, NumericFeature)]

    @property
    def categorical(self) -> list[CategoricalFeature]:
        return [f for f in self.features if isinstance(f, CategoricalFeature)]

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> FeatureSchema:
        try:
            return msgspec.convert(obj, type=cls)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"stored feature schema is invalid: {exc}") from None

    def declarations(self) -> dict[str, dict[str, Any]]:
        """The schema in params.yaml's `data.features` form, so a user can pin what was inferred."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.features:
            decl = msgspec.to_builtins(f)
            decl.pop("name")
            out[f.name] = {k: v for k, v in decl.items() if v is not None}
        return out

    def target_array(self, frame: pd.DataFrame) -> np.ndarray:
        """Target labels as int64 or str objects, matching the declared classes' type."""
        col = frame[self.target.name]
        if all(isinstance(c, int) for c in self.target.classes):
            return col.to_numpy(dtype="int64")
        return col.astype(str).to_numpy(dtype=object)

    def to_yaml(self, source: str) -> str:
        """The schema as YAML whose `features` mapping can be pasted under `data:` in params.yaml."""
        header = (
            f"# Feature schema of {source}, declared in params.yaml or inferred by `prepare`.\n"
            "# To pin it, copy `features` under `data:` in params.yaml and edit what you need.\n"
        )
        body = {
            "schema_version": self.schema_version,
            "target": msgspec.to_builtins(self.target),
            "features": self.declarations(),
        }
        return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)

    @classmethod
    def from_yaml(cls, path: Path | str) -> FeatureSchema:
        try:
            text = Path(path).read_bytes()
        except FileNotFoundError:
            raise SchemaError(f"{path}: schema file not found (run the prepare stage)") from None
        # A person edits this file, or copies its block into params.yaml: read it the same strict way.
        body = load_yaml(text, str(path), SchemaError)
        if not isinstance(body, dict):
            raise SchemaError(f"{path}: not a feature schema (expected a mapping)")
        features = [{"name": name, **decl} for name, decl in body.get("features", {}).items()]
        try:
            return cls.from_dict({**body, "features": features})
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None

    def to_model_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns in schema order with the training dtypes; raises on a missing column."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise SchemaError(f"frame lacks feature column(s): {', '.join(missing)}")
        columns: dict[str, Any] = {}
        for f in self.features:
            col = frame[f.name]
            if isinstance(f, NumericFeature):
                columns[f.name] = _as_float(col)
            else:
                columns[f.name] = _as_category_strings(col)
        return pd.DataFrame(columns, index=frame.index)


# --------------------------------------------------------------------------- building + validating


def infer_and_validate(
    raw: pd.DataFrame, data: DataParams, source: str
) -> tuple[FeatureSchema, pd.DataFrame]:
    """Build the schema from declarations plus inference, validate `raw` against it, and return the
    schema with a clean frame (features typed for the model, then the target)."""
    issues: list[DataIssue] = []
    if len(raw) == 0:
        raise DataValidationError(source, [DataIssue(WHOLE_TABLE, "no data rows", 0)])
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c) for c in raw.columns]
    _check_columns(raw, data, issues)

    features: list[Feature] = []
    clean: dict[str, Any] = {}
    for name in raw.columns:
        if name == data.target or name in data.drop:
            continue
        decl = data.features.get(name) or _infer_decl(raw[name], data, issues)
        if decl is None:
            continue
        feature, values = _check_feature(name, raw[name], decl, issues)
        features.append(feature)
        clean[name] = values

    target: Target | None = None
    if data.target in raw.columns:
        target, clean[data.target] = _check_target(raw[data.target], data, issues)
    if not features and not issues:
        issues.append(
            DataIssue(WHOLE_TABLE, "no feature columns left after data.drop and the target", 0)
        )
    if issues:
        raise DataValidationError(source, issues)
    assert target is not None
    schema = FeatureSchema(features=features, target=target)
    return schema, pd.DataFrame(clean)


def _check_columns(raw: pd.DataFrame, data: DataParams, issues: list[DataIssue]) -> None:
    """Every column params.yaml names (declared, the target, dropped) is in the data."""
    for name in [*data.features, data.target]:
        if name not in raw.columns:
            present = ", ".join(map(repr, raw.columns[:20]))
            issues.append(
                DataIssue(name, "missing from the data", 0, detail=f"(columns: {present})")
            )
    for name in data.drop:
        if name not in raw.columns:
            issues.append(DataIssue(name, "listed in data.drop but not in the data", 0))


def _infer_decl(col: pd.Series, data: DataParams, issues: list[DataIssue]) -> FeatureDecl | None:
    name = str(col.name)
    if pd.api.types.is_bool_dtype(col.dtype):
        return FeatureDecl(kind="numeric", dtype="integer")
    if pd.api.types.is_numeric_dtype(col.dtype):
        return FeatureDecl(kind="numeric")
    if pd.api.types.is_datetime64_any_dtype(col.dtype) or isinstance(col.dtype, pd.PeriodDtype):
        issues.append(
            DataIssue(
                name,
                f"has dtype {col.dtype}, which is not supported",
                0,
                detail="(derive numeric features from it, or add it to data.drop)",
            )
        )
        return None
    if _mostly_numbers(col, issues):
        return None
    n_levels = col.dropna().astype(str).nunique()
    if n_levels > data.max_categories:
        issues.append(
            DataIssue(
                name,
                f"has {n_levels} distinct text values, more than "
                f"data.max_categories={data.max_categories}",
                0,
                detail="(an identifier or free text? add it to data.drop, or declare it)",
            )
        )
        return None
    return FeatureDecl(kind="categorical")


def _mostly_numbers(col: pd.Series, issues: list[DataIssue]) -> bool:
    """Mostly numbers in a text column are numbers with strays ('n/a', '?'): report the strays rather
    than train on numbers as text. Text with a few numbers (sizes S, M, L, 42) stays categorical."""
    present = col.notna().to_numpy()
    numbers = pd.to_numeric(col.astype(object), errors="coerce").notna().to_numpy()
    strays = present & ~numbers
    if not strays.any() or numbers.sum() <= strays.sum():
        return False
    examples = ", ".join(repr(v) for v in pd.unique(col[strays].astype(str))[:3])
    hint = "list missing-value markers in data.na_values, or declare the column in data.features"
    kind = "values are not numbers in a column of numbers"
    _issue(issues, str(col.name), kind, strays, f"(e.g. {examples}; {hint})")
    return True


def _rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) + 1 for i in np.flatnonzero(mask)[:_ROWS_SHOWN])


def _issue(
    issues: list[DataIssue], name: str, kind: str, mask: np.ndarray, detail: str = ""
) -> None:
    count = int(mask.sum())
    if count:
        issues.append(DataIssue(name, kind, count, _rows(mask), detail))


def _check_feature(
    name: str, col: pd.Series, decl: FeatureDecl, issues: list[DataIssue]
) -> tuple[Feature, pd.Series]:
    missing = col.isna().to_numpy()
    nullable = bool(missing.any()) if decl.nullable is None else decl.nullable
    if not nullable:
        _issue(issues, name, "missing values", missing, "but the feature is not nullable")
    if decl.kind == "numeric":
        values = pd.to_numeric(col.astype(object) if col.dtype == bool else col, errors="coerce")
        values = values.astype("float64")
        bad = values.isna().to_numpy() & ~missing
        examples = ", ".join(repr(v) for v in col[bad].astype(str).unique()[:3])
        _issue(
            issues, name, "values are not numbers", bad, f"(e.g. {examples})" if examples else ""
        )
        arr = values.to_numpy()
        finite = ~np.isnan(arr)
        _issue(issues, name, "values are infinite", np.isinf(arr))
        integral = bool(np.all(np.mod(arr[finite], 1) == 0)) if finite.any() else False
        dtype = decl.dtype or ("integer" if integral else "float")
        if dtype == "integer":
            _issue(
                issues,
                name,
                "values are not whole numbers",
                finite & (np.mod(np.where(finite, arr, 0), 1) != 0),
                "but the feature is declared integer",
            )
        if decl.min is not None:
            _issue(issues, name, f"values below minimum {decl.min:g}", finite & (arr < decl.min))
        if decl.max is not None:
            _issue(issues, name, f"values above maximum {decl.max:g}", finite & (arr > decl.max))
        feature: Feature = NumericFeature(name, dtype, nullable, decl.min, decl.max)
        return feature, values

    values = _as_category_strings(col)
    observed = sorted(set(values.dropna().tolist()))
    if decl.categories is None:
        categories = observed
    else:
        declared = set(decl.categories)
        categories = list(decl.categories) + [c for c in observed if c not in declared]
        if decl.strict:
            unknown = values.notna().to_numpy() & ~values.isin(declared).to_numpy()
            examples = ", ".join(repr(v) for v in pd.unique(values[unknown])[:3])
            _issue(
                issues,
                name,
                "values are not among the declared categories",
                unknown,
                f"(e.g. {examples}; strict=true)",
            )
            categories = list(decl.categories)
    if not categories and nullable:
        issues.append(DataIssue(name, "has no non-missing values", 0))
    return CategoricalFeature(name, categories, nullable, decl.strict), values


def target_classes(present: pd.Series) -> list[str | int] | None:
    """The sorted classes of a target's non-missing values: integers for whole numbers (and
    booleans, as 0/1), text otherwise; None for other numbers, which are not class labels."""
    if pd.api.types.is_bool_dtype(present.dtype) or (
        pd.api.types.is_numeric_dtype(present.dtype)
        and np.all(np.mod(present.to_numpy(dtype="float64"), 1) == 0)
    ):
        return sorted(int(v) for v in pd.unique(present.astype("int64")))
    if pd.api.types.is_numeric_dtype(present.dtype):
        return None
    return sorted(str(v) for v in pd.unique(_as_category_strings(present)))


def binary_positive(
    classes: Sequence[str | int], wanted: str | None, setting: str
) -> tuple[str | int | None, str | None]:
    """The positive class of a binary target, or the problem naming `setting` (where the user says
    it: params' data.positive_class, a command's --positive). `wanted` is matched as text. Without
    it, of numbers the larger is positive (1 of 0/1); text has no such order (alphabetical would
    make 'stay' the positive of churn/stay), so two text labels need `setting`."""
    if wanted is not None:
        match = [c for c in classes if str(c) == wanted]
        if match:
            return match[0], None
        return None, f"{setting} {wanted!r} is not a class of the target {list(classes)}"
    if all(isinstance(c, int) for c in classes):
        return max(classes), None
    labels = " and ".join(repr(c) for c in classes)
    return None, (
        f"{setting} is needed for two text labels ({labels}): name the one whose probability "
        "is scored"
    )


def _check_target(
    col: pd.Series, data: DataParams, issues: list[DataIssue]
) -> tuple[Target | None, pd.Series]:
    name = data.target
    missing = col.isna().to_numpy()
    if missing.all():
        issues.append(DataIssue(name, f"all {len(col)} target values are missing", 0))
        return None, col
    _issue(issues, name, "missing target values", missing)
    classes = target_classes(col[~missing])
    if classes is None:
        detail = "(regression is not supported; the target must be class labels)"
        issues.append(DataIssue(name, "target has non-integer numbers", 0, detail=detail))
        return None, col
    if isinstance(classes[0], int):
        values = col.astype("float64").astype("Int64") if missing.any() else col.astype("int64")
    else:
        values = _as_category_strings(col)
    counts = values.value_counts()
    if len(classes) < 2:
        single = f"target has a single class {classes[0]!r}"
        issues.append(DataIssue(name, single, 0, detail="(a classifier needs at least two)"))
    for cls in classes:
        n, least = int(counts.get(cls, 0)), data.min_rows_per_class
        if n < least:
            few = f"class {cls!r} has {n} rows, fewer than data.min_rows_per_class={least}"
            issues.append(DataIssue(name, few, 0))
    positive: str | int | None = None
    if len(classes) == 2:
        positive, problem = binary_positive(classes, data.positive_class, "data.positive_class")
        if problem:
            issues.append(DataIssue(name, problem, 0))
    return Target(name, classes, positive), values


# --------------------------------------------------------------------------- dtype coercion


def _as_float(col: pd.Series) -> np.ndarray:
    if col.dtype == np.float64:
        return col.to_numpy(copy=True)
    return pd.to_numeric(col, errors="raise").to_numpy(dtype="float64", na_value=np.nan)


def _as_category_strings(col: pd.Series) -> pd.Series:
    """Categorical values as Python str in an object column (see `category_name`), NaN for missing."""

    def fmt(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return np.nan
        return category_name(v)

    if col.dtype == object and all(type(v) is str for v in col if v is not np.nan):
        return col
    return pd.Series([fmt(v) for v in col.tolist()], index=col.index, dtype=object, name=col.name)


def frame_from_records(schema: FeatureSchema, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """JSON-like records (None for missing) to a frame with the training dtypes."""
    columns: dict[str, Any] = {}
    for f in schema.features:
        raw = [r.get(f.name) for r in records]
        if isinstance(f, NumericFeature):
            columns[f.name] = np.array([np.nan if v is None else v for v in raw], dtype="float64")
        else:
            # An explicit object Series: from a bare object array pandas would infer its `str` dtype.
            columns[f.name] = pd.Series(
                [np.nan if v is None else str(v) for v in raw], dtype=object
            )
    return pd.DataFrame(columns)
