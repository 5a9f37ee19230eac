"""Fitted preprocessing steps in (a ColumnTransformer of SimpleImputer, StandardScaler and
OneHotEncoder pipelines); the same arithmetic on numpy arrays out, or UnsupportedPipeline.

Everything is read from public fitted attributes (`statistics_`, `indicator_.features_`, `mean_`,
`scale_`, `categories_`, `infrequent_categories_`, `output_indices_`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops.schema import FeatureSchema
from modelops.types import FloatArray, IndexArray

FEW_ROWS = 8  # below this many rows, plain Python per value is faster than numpy per column


class UnsupportedPipeline(Exception):
    """The pipeline holds a step or setting the fast path cannot reproduce; the message says which."""


@dataclass(frozen=True)
class ImputeNumbers:
    """SimpleImputer on numbers: NaN -> fitted statistic, then the missing indicator columns."""

    statistics: FloatArray
    indicator: IndexArray | None

    def apply(self, x: FloatArray) -> FloatArray:
        missing = np.isnan(x)
        out = np.where(missing, self.statistics, x) if missing.any() else x
        if self.indicator is None:
            return out
        return np.hstack([out, missing[:, self.indicator].astype(np.float64)])


@dataclass(frozen=True)
class Scale:
    """StandardScaler: the same two in-place operations sklearn performs, in the same order."""

    mean: FloatArray | None
    scale: FloatArray | None

    def apply(self, x: FloatArray) -> FloatArray:
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x


@dataclass(frozen=True)
class FillCategories:
    """SimpleImputer on categories: a missing value becomes the fitted fill (constant or mode)."""

    fill: tuple[Any, ...]

    def apply(self, columns: list[list[Any]]) -> list[list[Any]]:
        return [
            [fill if v is None else v for v in col]
            for col, fill in zip(columns, self.fill, strict=True)
        ]


@dataclass(frozen=True)
class OneHot:
    """OneHotEncoder: per feature, a table from category to its output column within the block.

    A value missing from a table goes to `unknown` (the infrequent column when the encoder maps
    unseen values there, else -1: an all-zero block, as `handle_unknown="ignore"` does).
    """

    tables: tuple[dict[Any, int], ...]
    unknown: tuple[int, ...]
    offsets: tuple[int, ...]
    width: int

    def apply(self, columns: list[list[Any]]) -> FloatArray:
        n = len(columns[0]) if columns else 0
        out = np.zeros((n, self.width), dtype=np.float64)
        for col, table, unknown, offset in zip(
            columns, self.tables, self.unknown, self.offsets, strict=True
        ):
            if n <= FEW_ROWS:  # a handful of rows: a dict lookup each beats numpy's set-up
                for row, v in enumerate(col):
                    if (hit := table.get(v, unknown)) >= 0:
                        out[row, offset + hit] = 1.0
                continue
            hits = np.fromiter((table.get(v, unknown) for v in col), dtype=np.intp, count=n)
            rows = np.flatnonzero(hits >= 0)
            out[rows, offset + hits[rows]] = 1.0
        return out


NumericStep = ImputeNumbers | Scale
CategoricalStep = FillCategories | OneHot


@dataclass(frozen=True)
class Block:
    """One ColumnTransformer entry: which input columns it reads and the steps it applies."""

    name: str
    numeric: bool
    inputs: IndexArray  # positions in the numeric matrix, or in the categorical columns
    before: tuple[CategoricalStep, ...]  # categorical blocks: steps up to and incl. one-hot
    after: tuple[NumericStep, ...]  # steps on numbers
    width: int

    def apply(self, numbers: FloatArray, categories: list[list[Any]]) -> FloatArray:
        if self.numeric:
            x = numbers[:, self.inputs]
        else:
            cols = [categories[i] for i in self.inputs.tolist()]
            encoded: FloatArray | None = None
            for step in self.before:
                if isinstance(step, OneHot):
                    encoded = step.apply(cols)
                else:
                    cols = step.apply(cols)
            assert encoded is not None  # derive() guarantees a categorical block ends encoded
            x = encoded
        for num_step in self.after:
            x = num_step.apply(x)
        return x


def derive_blocks(
    ct: ColumnTransformer, schema: FeatureSchema, numeric: list[int], categorical: list[int]
) -> list[Block]:
    if getattr(ct, "sparse_output_", False):
        raise UnsupportedPipeline("the ColumnTransformer produces sparse output")
    position = {name: i for i, name in enumerate(schema.names)}
    numeric_index = {pos: k for k, pos in enumerate(numeric)}
    categorical_index = {pos: k for k, pos in enumerate(categorical)}
    blocks: list[Block] = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or _is_empty(columns):
            continue
        if not (isinstance(columns, list | tuple) and all(isinstance(c, str) for c in columns)):
            raise UnsupportedPipeline(f"transformer {name!r} selects columns by {columns!r}")
        unknown = [c for c in columns if c not in position]
        if unknown:
            raise UnsupportedPipeline(f"transformer {name!r} reads non-feature columns {unknown}")
        kinds = {pos in numeric_index for pos in (position[c] for c in columns)}
        if len(kinds) != 1:
            raise UnsupportedPipeline(f"transformer {name!r} mixes numeric and categorical columns")
        is_numeric = kinds.pop()
        index = numeric_index if is_numeric else categorical_index
        inputs = np.array([index[position[c]] for c in columns], dtype=np.intp)
        steps = _flatten(transformer)
        block = _derive_block(name, is_numeric, inputs, steps)
        expected = ct.output_indices_.get(name)
        if expected is not None and expected.stop - expected.start != block.width:
            raise UnsupportedPipeline(
                f"transformer {name!r}: derived {block.width} columns, the fitted one gives "
                f"{expected.stop - expected.start}"
            )
        blocks.append(block)
    if not blocks:
        raise UnsupportedPipeline("the ColumnTransformer uses no columns")
    return blocks


def _is_empty(columns: Any) -> bool:
    try:
        return len(columns) == 0
    except TypeError:
        return False


def _flatten(transformer: Any) -> list[tuple[str, Any]]:
    if transformer == "passthrough":
        return []
    if isinstance(transformer, Pipeline):
        return [(n, s) for n, s in transformer.steps if s not in (None, "passthrough")]
    return [(type(transformer).__name__, transformer)]


def _derive_block(
    name: str, is_numeric: bool, inputs: IndexArray, steps: list[tuple[str, Any]]
) -> Block:
    width = len(inputs)
    before: list[CategoricalStep] = []
    after: list[NumericStep] = []
    encoded = is_numeric
    for step_name, step in steps:
        where = f"{name}/{step_name}"
        if not encoded:
            if isinstance(step, SimpleImputer):
                before.append(_fill_categories(where, step))
            elif isinstance(step, OneHotEncoder):
                one_hot = _one_hot(where, step)
                before.append(one_hot)
                width = one_hot.width
                encoded = True
            else:
                raise UnsupportedPipeline(
                    f"step {where!r} is a {type(step).__name__}; on categories the fast path "
                    "knows SimpleImputer and OneHotEncoder"
                )
        else:
            derived = numeric_step(where, step, width)
            if isinstance(derived, ImputeNumbers) and derived.indicator is not None:
                width += len(derived.indicator)
            after.append(derived)
    if not encoded:
        raise UnsupportedPipeline(f"transformer {name!r} passes categories through unencoded")
    return Block(name, is_numeric, inputs, tuple(before), tuple(after), width)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def numeric_step(where: str, step: Any, width: int) -> NumericStep:
    if isinstance(step, SimpleImputer):
        if not _is_nan(step.missing_values):
            raise UnsupportedPipeline(f"step {where!r} imputes {step.missing_values!r}, not NaN")
        statistics = np.asarray(step.statistics_, dtype=np.float64)
        if np.isnan(statistics).any() and not step.keep_empty_features:
            raise UnsupportedPipeline(f"step {where!r} drops columns it saw no values for")
        indicator: IndexArray | None = None
        if step.add_indicator:
            ind = step.indicator_
            if ind.error_on_new or ind.sparse is True:
                raise UnsupportedPipeline(
                    f"step {where!r} has a missing indicator it cannot mirror"
                )
            indicator = np.asarray(ind.features_, dtype=np.intp)
        if len(statistics) != width:
            raise UnsupportedPipeline(f"step {where!r} was fitted on {len(statistics)} columns")
        return ImputeNumbers(statistics, indicator)
    if isinstance(step, StandardScaler):
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
        scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
        for arr in (mean, scale):
            if arr is not None and len(arr) != width:
                raise UnsupportedPipeline(f"step {where!r} was fitted on {len(arr)} columns")
        return Scale(mean, scale)
    raise UnsupportedPipeline(
        f"step {where!r} is a {type(step).__name__}; on numbers the fast path knows "
        "SimpleImputer and StandardScaler"
    )


def _fill_categories(where: str, step: SimpleImputer) -> FillCategories:
    if not _is_nan(step.missing_values):
        raise UnsupportedPipeline(f"step {where!r} imputes {step.missing_values!r}, not NaN")
    if step.add_indicator:
        raise UnsupportedPipeline(f"step {where!r} adds a missing indicator to categories")
    fill = tuple(step.statistics_.tolist())
    if any(v is None or _is_nan(v) for v in fill):
        raise UnsupportedPipeline(f"step {where!r} drops columns it saw no values for")
    return FillCategories(fill)


def _one_hot(where: str, enc: OneHotEncoder) -> OneHot:
    if getattr(enc, "drop_idx_", None) is not None:
        raise UnsupportedPipeline(f"step {where!r} drops a category (drop={enc.drop!r})")
    if enc.handle_unknown == "error":
        raise UnsupportedPipeline(f"step {where!r} raises on unseen categories")
    # Absent unless min_frequency or max_categories grouped rare categories.
    infrequent = getattr(enc, "infrequent_categories_", None) or [None] * len(enc.categories_)
    grouped_unknowns = enc.handle_unknown == "infrequent_if_exist"
    tables: list[dict[Any, int]] = []
    unknowns: list[int] = []
    offsets: list[int] = []
    width = 0
    for cats, rare in zip(enc.categories_, infrequent, strict=True):
        table, unknown = _one_hot_column(where, cats.tolist(), rare, grouped_unknowns)
        tables.append(table)
        unknowns.append(unknown)
        offsets.append(width)
        width += len(set(table.values()))
    if width != len(enc.get_feature_names_out()):
        raise UnsupportedPipeline(f"step {where!r}: derived {width} columns, it gives more")
    return OneHot(tuple(tables), tuple(unknowns), tuple(offsets), width)


def _one_hot_column(
    where: str, cats: list[Any], rare: Any, grouped_unknowns: bool
) -> tuple[dict[Any, int], int]:
    """One encoded column's table (category -> output column, rare ones sharing the last) and the
    column an unseen category lands in (-1: none, all zeros)."""
    rare_set = set() if rare is None else set(rare.tolist())
    table: dict[Any, int] = {}
    column = 0
    for c in cats:
        if not (isinstance(c, str) or _is_nan(c)):
            raise UnsupportedPipeline(f"step {where!r} has non-text category {c!r}")
        if c in rare_set:
            continue
        # A NaN category (no imputer before the encoder) is what a missing value matches.
        table[None if _is_nan(c) else c] = column
        column += 1
    if not rare_set:
        return table, -1
    for c in rare_set:
        table[None if _is_nan(c) else c] = column
    return table, column if grouped_unknowns else -1
