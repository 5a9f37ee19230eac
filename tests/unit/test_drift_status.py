"""The drift statuses: one order, which is the severity the server exports and alerts compare."""

from __future__ import annotations

import subprocess
import sys

from modelops.drift.status import SEVERITY, SEVERITY_LEGEND, STATUSES, worst
from tests.conftest import REPO


def test_statuses_are_ordered_by_severity_from_zero() -> None:
    assert STATUSES == ("stable", "insufficient_data", "moderate", "significant")
    assert [SEVERITY[s] for s in STATUSES] == [0, 1, 2, 3]
    assert SEVERITY_LEGEND == "0 stable, 1 insufficient data, 2 moderate, 3 significant"


def test_the_worst_status_wins_and_nothing_is_insufficient_data() -> None:
    assert worst(["stable", "significant", "moderate"]) == "significant"
    assert worst(["stable", "insufficient_data"]) == "insufficient_data"
    assert worst([]) == "insufficient_data"


def test_the_status_names_load_without_numpy() -> None:
    code = (
        "import sys, modelops.drift.status\n"
        "print(sorted({'numpy', 'pandas', 'pyarrow', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_numbers_severities_as_the_code_does() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"`modelops_feature_drift_severity` ({SEVERITY_LEGEND})" in readme
