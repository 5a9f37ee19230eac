"""The bundled data looks like a real customer table and is the same for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest

from modelops.synthetic import SCENARIOS, generate_customers


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a, b = generate_customers(5000, 1), generate_customers(5000, 1)
    pd.testing.assert_frame_equal(a, b)
    assert not generate_customers(5000, 2).equals(a)


def test_table_has_realistic_features_gaps_and_levels() -> None:
    df = generate_customers(30_000, 20261127)
    numeric = [
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "age",
        "support_calls",
        "data_usage_gb",
    ]
    categorical = ["contract", "payment_method", "plan", "region"]
    assert set(numeric + categorical + ["customer_id", "churned"]) == set(df.columns)
    assert df["customer_id"].is_unique
    for col in categorical:
        assert 3 <= df[col].nunique() <= 20, col
    missing = df.isna().mean()
    for col in ["total_charges", "age", "support_calls", "data_usage_gb"]:
        assert 0.005 < missing[col] < 0.15, col
    assert missing[["tenure_months", "monthly_charges", "churned"]].sum() == 0
    # total charges are missing exactly for first-month customers
    assert df.loc[df["tenure_months"] == 0, "total_charges"].isna().all()
    assert 0.15 < df["churned"].mean() < 0.40
    assert df["age"].min() >= 18 and df["tenure_months"].between(0, 72).all()


def test_ground_truth_signals_point_the_documented_way() -> None:
    df = generate_customers(30_000, 3)
    by_contract = df.groupby("contract")["churned"].mean()
    assert by_contract["month-to-month"] > by_contract["one_year"] > by_contract["two_year"]
    assert (
        df.loc[df["tenure_months"] > 36, "churned"].mean()
        < df.loc[df["tenure_months"] < 6, "churned"].mean()
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_generates_the_same_columns(scenario: str) -> None:
    df = generate_customers(2000, 5, scenario)  # type: ignore[arg-type]
    assert list(df.columns) == list(generate_customers(10, 5).columns)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'winter'"):
        generate_customers(100, 1, "winter")  # type: ignore[arg-type]
