"""Which columns `use-data` drops as identifiers: only columns whose every value is distinct."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelops.usedata import id_reason

N = 200
rng = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("name", "values", "reason"),
    [
        ("account", [f"A{i}" for i in range(N)], "every value is distinct"),
        ("customer_id", rng.permutation(10**6)[:N], "named like an identifier"),
        ("customerId", rng.permutation(10**6)[:N], "named like an identifier"),
        ("row", np.arange(5, 5 + N), "consecutive whole numbers"),
        ("income", rng.permutation(10**6)[:N], None),  # distinct numbers, but not an id
        ("ratio", rng.normal(size=N), None),
        ("plan", rng.choice(["a", "b"], N), None),
        ("year", rng.choice([2007, 2008, 2009], N), None),
        ("paid", rng.permutation(10**6)[:N], None),  # ends in 'id' without being one
        ("flag", np.arange(N) % 2 == 0, None),
    ],
)
def test_identifiers_are_columns_of_distinct_values_that_look_like_ids(
    name: str, values: object, reason: str | None
) -> None:
    found = id_reason(pd.Series(values, name=name))
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_gaps_do_not_hide_an_identifier() -> None:
    ids = pd.Series([f"c{i}" if i % 10 else None for i in range(N)], name="code")
    assert id_reason(ids) is not None
