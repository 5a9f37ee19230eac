from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops import dataset
from modelops.errors import DataValidationError, SchemaError
from modelops.params import DataParams, FeatureDecl
from modelops.schema import (
    CategoricalFeature,
    FeatureSchema,
    NumericFeature,
    frame_from_records,
    infer_and_validate,
)

NA = DataParams().na_values


def frame(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "tenure": rng.integers(0, 60, n),
            "charges": rng.uniform(20, 100, n).round(2),
            "plan": rng.choice(["basic", "premium", "family"], n),
            "churned": np.tile([0, 1], n // 2),
        }
    )


def params(**kw: object) -> DataParams:
    base: dict[str, object] = {"target": "churned", "drop": ["id"], "min_rows_per_class": 10}
    base.update(kw)
    return DataParams(**base)  # type: ignore[arg-type]


def problems(raw: pd.DataFrame, data: DataParams) -> str:
    with pytest.raises(DataValidationError) as info:
        infer_and_validate(raw, data, "customers.csv")
    return str(info.value)


def test_undeclared_columns_are_inferred_from_dtypes() -> None:
    schema, clean = infer_and_validate(frame(), params(), "customers.csv")
    assert schema.names == ["tenure", "charges", "plan"]
    assert schema.features[0] == NumericFeature("tenure", "integer", False)
    assert schema.features[1] == NumericFeature("charges", "float", False)
    assert schema.features[2] == CategoricalFeature("plan", ["basic", "family", "premium"], False)
    assert schema.target.classes == [0, 1] and schema.target.positive == 1
    assert list(clean.columns) == ["tenure", "charges", "plan", "churned"]


def test_declarations_override_inference_and_keep_declared_category_order() -> None:
    decl = {
        "plan": FeatureDecl(
            kind="categorical", categories=["premium", "basic", "family"], strict=True
        )
    }
    schema, _ = infer_and_validate(frame(), params(features=decl), "x")
    assert schema.features[-1] == CategoricalFeature(
        "plan", ["premium", "basic", "family"], False, True
    )


def test_missing_column_is_named_with_the_columns_present() -> None:
    raw = frame().drop(columns=["tenure"])
    msg = problems(raw, params(features={"tenure": FeatureDecl(kind="numeric")}))
    assert (
        "column 'tenure': missing from the data (columns: 'id', 'charges', 'plan', 'churned')"
        in msg
    )


def test_wrong_dtype_counts_the_values_and_shows_rows_and_examples() -> None:
    raw = frame().astype({"charges": object})
    raw.loc[[2, 16, 40], "charges"] = ["abc", "n/a", "abc"]
    msg = problems(raw, params(features={"charges": FeatureDecl(kind="numeric")}))
    assert "column 'charges': 3 values are not numbers (e.g. 'abc', 'n/a') (rows 3, 17, 41)" in msg


def test_every_problem_is_reported_at_once() -> None:
    raw = frame()
    raw.loc[[0, 5], "tenure"] = -1
    raw.loc[7, "plan"] = "gold"
    decl = {
        "tenure": FeatureDecl(kind="numeric", min=0, max=48),
        "plan": FeatureDecl(
            kind="categorical", categories=["basic", "premium", "family"], strict=True
        ),
    }
    msg = problems(raw, params(features=decl))
    assert "3 problem(s) found" in msg
    assert "column 'tenure': 2 values below minimum 0 (rows 1, 6)" in msg
    assert "column 'tenure': " in msg and "values above maximum 48" in msg
    assert (
        "column 'plan': 1 values are not among the declared categories (e.g. 'gold'; strict=true) (rows 8)"
        in msg
    )


def test_more_than_five_offending_rows_are_elided() -> None:
    raw = frame()
    raw.loc[range(0, 40, 2), "tenure"] = -5
    msg = problems(raw, params(features={"tenure": FeatureDecl(kind="numeric", min=0)}))
    assert "20 values below minimum 0 (rows 1, 3, 5, 7, 9, …)" in msg


def test_declared_integer_feature_rejects_fractions() -> None:
    raw = frame()
    raw["tenure"] = raw["tenure"].astype(float)
    raw.loc[3, "tenure"] = 2.5
    msg = problems(raw, params(features={"tenure": FeatureDecl(kind="numeric", dtype="integer")}))
    assert (
        "column 'tenure': 1 values are not whole numbers but the feature is declared integer (rows 4)"
        in msg
    )


def test_missing_values_in_a_non_nullable_feature() -> None:
    raw = frame()
    raw.loc[9, "charges"] = np.nan
    msg = problems(raw, params(features={"charges": FeatureDecl(kind="numeric", nullable=False)}))
    assert "column 'charges': 1 missing values but the feature is not nullable (rows 10)" in msg


def test_all_null_target() -> None:
    raw = frame()
    raw["churned"] = np.nan
    assert "column 'churned': all 120 target values are missing" in problems(raw, params())


def test_some_null_target_rows_are_listed() -> None:
    raw = frame().astype({"churned": float})
    raw.loc[[4, 8], "churned"] = np.nan
    assert "column 'churned': 2 missing target values (rows 5, 9)" in problems(raw, params())


def test_single_class_target() -> None:
    raw = frame()
    raw["churned"] = 1
    assert (
        "column 'churned': target has a single class 1 (a classifier needs at least two)"
        in problems(raw, params())
    )


def test_too_few_rows_in_a_class() -> None:
    raw = frame()
    raw["churned"] = 0
    raw.loc[:4, "churned"] = 1
    msg = problems(raw, params(min_rows_per_class=10))
    assert "class 1 has 5 rows, fewer than data.min_rows_per_class=10" in msg


def test_continuous_target_is_refused() -> None:
    raw = frame()
    raw["churned"] = np.linspace(0, 1, len(raw))
    assert "target has non-integer numbers (regression is not supported" in problems(raw, params())


def test_identifier_like_text_column_must_be_dropped_or_declared() -> None:
    msg = problems(frame(), params(drop=[]))
    assert "column 'id': has 120 distinct text values, more than data.max_categories=50" in msg
    assert "add it to data.drop" in msg


def test_drop_naming_an_absent_column_is_an_error() -> None:
    assert "column 'ghost': listed in data.drop but not in the data" in problems(
        frame(), params(drop=["id", "ghost"])
    )


def test_unknown_positive_class() -> None:
    assert "data.positive_class 'yes' is not a class of the target [0, 1]" in problems(
        frame(), params(positive_class="yes")
    )


def test_string_labels_and_chosen_positive_class() -> None:
    raw = frame()
    raw["churned"] = np.where(raw["churned"] == 1, "yes", "no")
    schema, _ = infer_and_validate(raw, params(positive_class="no"), "x")
    assert schema.target.classes == ["no", "yes"] and schema.target.positive == "no"


def test_two_text_labels_without_a_positive_class_are_refused_naming_both() -> None:
    raw = frame()
    raw["churned"] = np.where(raw["churned"] == 1, "churn", "stay")
    # Alphabetical order would have made 'stay' the scored class of a churn model.
    assert (
        "column 'churned': data.positive_class is needed for two text labels ('churn' and "
        "'stay'): name the one whose probability is scored" in problems(raw, params())
    )


def test_numeric_binary_labels_score_the_larger_without_a_positive_class() -> None:
    schema, _ = infer_and_validate(frame(), params(), "x")
    assert schema.target.classes == [0, 1] and schema.target.positive == 1
    raw = frame()
    raw["churned"] = raw["churned"] == 1  # booleans are 0/1
    schema, _ = infer_and_validate(raw, params(), "x")
    assert schema.target.classes == [0, 1] and schema.target.positive == 1


def test_text_labels_of_more_classes_need_no_positive_class() -> None:
    raw = frame()
    raw["churned"] = np.resize(["a", "b", "c"], len(raw))
    schema, _ = infer_and_validate(raw, params(), "x")
    assert schema.target.classes == ["a", "b", "c"] and schema.target.positive is None


def test_empty_and_unreadable_files_are_data_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match=r"(?s)empty.csv: 1 problem.*- file is empty"):
        dataset.read_table(empty, na_values=NA)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,churned\n")
    with pytest.raises(DataValidationError, match="no data rows"):
        infer_and_validate(
            dataset.read_table(header_only, na_values=NA), params(drop=[]), str(header_only)
        )
    with pytest.raises(DataValidationError, match="file not found"):
        dataset.read_table(tmp_path / "absent.parquet", na_values=NA)
    with pytest.raises(DataValidationError, match=r"unsupported file type '\.xlsx'"):
        dataset.read_table(tmp_path / "data.xlsx", na_values=NA)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(
        DataValidationError, match=r"(?s)broken.parquet: 1 problem.*- cannot be read"
    ):
        dataset.read_table(broken, na_values=NA)


def test_model_frame_has_training_dtypes_whatever_the_source() -> None:
    schema, clean = infer_and_validate(frame(), params(), "x")
    records = [
        {"tenure": 3, "charges": None, "plan": "basic"},
        {"tenure": None, "charges": 50.5, "plan": None},
    ]
    from_records = frame_from_records(schema, records)
    from_frame = schema.to_model_frame(pd.DataFrame(records))
    for built in (from_records, from_frame):
        assert list(built.dtypes.astype(str)) == ["float64", "float64", "object"]
        assert np.isnan(built.loc[1, "tenure"]) and built.loc[1, "plan"] is np.nan
    pd.testing.assert_frame_equal(from_records, from_frame)
    parquet_like = schema.to_model_frame(clean.astype({"plan": "string"}))
    assert parquet_like["plan"].dtype == object


def test_model_frame_names_missing_feature_columns() -> None:
    schema, _ = infer_and_validate(frame(), params(), "x")
    with pytest.raises(SchemaError, match="frame lacks feature column"):
        schema.to_model_frame(pd.DataFrame({"tenure": [1]}))


def test_categorical_codes_read_with_gaps_mean_the_same_categories() -> None:
    raw = frame()
    raw["region"] = np.tile([1.0, 2.0, np.nan], len(raw) // 3)
    schema, _ = infer_and_validate(
        raw, params(features={"region": FeatureDecl(kind="categorical")}), "x"
    )
    assert schema.features[-1] == CategoricalFeature("region", ["1", "2"], True)


def test_yaml_round_trip_gives_the_same_schema_and_pastable_declarations(tmp_path: Path) -> None:
    schema, _ = infer_and_validate(frame(), params(), "customers.csv")
    path = tmp_path / "schema.yaml"
    path.write_text(schema.to_yaml("customers.csv"))
    assert FeatureSchema.from_yaml(path) == schema
    for name, decl in schema.declarations().items():
        FeatureDecl(**decl)  # each entry is a valid params.yaml declaration
        assert name in schema.names


def test_a_csv_with_a_duplicated_column_name_is_refused_naming_its_positions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("age,tenure,age,plan,plan,plan,churned\n30,1,31,a,b,c,0\n")
    with pytest.raises(DataValidationError) as info:
        dataset.read_table(path, na_values=NA)
    message = str(info.value)
    assert "column 'age': appears 2 times in the header (columns 1, 3)" in message
    assert "column 'plan': appears 3 times in the header (columns 4, 5, 6)" in message
    assert "age.1" not in message


def test_a_parquet_file_with_a_duplicated_column_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    table = pa.table([pa.array([1, 2]), pa.array([3, 4]), pa.array([0, 1])], ["age", "age", "y"])
    pq.write_table(table, path)
    with pytest.raises(DataValidationError) as info:
        dataset.read_table(path, na_values=NA)
    assert "column 'age': appears 2 times in the header (columns 1, 2)" in str(info.value)


def csv_with_markers(tmp_path: Path) -> Path:
    """A CSV whose `age` has blanks and 'n/a' markers and whose `region` has a real category 'NA'."""
    raw = frame()
    raw["age"] = (np.arange(len(raw)) % 50 + 20).astype(object)
    raw.loc[[3, 7], "age"] = "n/a"
    raw.loc[[10, 11], "age"] = None
    raw["region"] = np.tile(["NA", "EU", "null"], len(raw) // 3)
    path = tmp_path / "customers.csv"
    raw.to_csv(path, index=False)
    return path


def test_only_empty_fields_are_missing_unless_more_markers_are_declared(tmp_path: Path) -> None:
    raw = dataset.read_table(csv_with_markers(tmp_path), na_values=NA)
    assert raw["age"].isna().sum() == 2 and (raw["age"] == "n/a").sum() == 2
    assert sorted(raw["region"].unique()) == ["EU", "NA", "null"]


def test_an_undeclared_column_of_numbers_with_some_text_is_refused_with_rows(
    tmp_path: Path,
) -> None:
    raw = dataset.read_table(csv_with_markers(tmp_path), na_values=NA)
    msg = problems(raw, params())
    assert (
        "column 'age': 2 values are not numbers in a column of numbers (e.g. 'n/a'; "
        "list missing-value markers in data.na_values, or declare the column in data.features) "
        "(rows 4, 8)" in msg
    )
    assert "1 problem(s)" in msg


def test_declared_missing_value_markers_become_missing(tmp_path: Path) -> None:
    raw = dataset.read_table(csv_with_markers(tmp_path), na_values=["", "n/a"])
    schema, clean = infer_and_validate(raw, params(), "customers.csv")
    assert schema.features[schema.names.index("age")] == NumericFeature("age", "integer", True)
    assert clean["age"].isna().sum() == 4
    region = schema.features[schema.names.index("region")]
    assert isinstance(region, CategoricalFeature) and region.categories == ["EU", "NA", "null"]


def test_a_text_column_with_a_few_numbers_stays_categorical() -> None:
    raw = frame()
    raw["size"] = np.tile(["S", "M", "L", "42"], len(raw) // 4)
    schema, _ = infer_and_validate(raw, params(), "x")
    size = schema.features[schema.names.index("size")]
    assert isinstance(size, CategoricalFeature) and size.categories == ["42", "L", "M", "S"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: text + "target:\n  name: again\n",
            "duplicate key 'target' at line",
        ),
        (
            lambda text: text.replace("kind: numeric,", "kind: numeric, max: .inf,", 1),
            "must be a finite number",
        ),
    ],
)
def test_a_schema_file_with_a_repeated_key_or_infinite_bound_is_refused(
    tmp_path: Path, edit: object, message: str
) -> None:
    schema, _ = infer_and_validate(frame(), params(), "customers.csv")
    path = tmp_path / "schema.yaml"
    path.write_text(edit(schema.to_yaml("customers.csv")))  # type: ignore[operator]
    with pytest.raises(SchemaError) as info:
        FeatureSchema.from_yaml(path)
    assert message in str(info.value) and str(path) in str(info.value)
