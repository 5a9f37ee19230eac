"""The HTML drift report: one self-contained page with the verdict, every part in the table and in
a chart, user data escaped, the same bytes for the same report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops import synthetic
from modelops.drift import html, incoming
from modelops.drift.profile import build_profile
from modelops.drift.report import DriftReport, prediction_part
from modelops.drift.status import STATUS_COLORS, STATUSES, Thresholds
from modelops.params import DataParams
from modelops.schema import infer_and_validate

Judged = tuple[DriftReport, dict[str, list[dict[str, object]]]]


def judge(tmp_path: Path, train: pd.DataFrame, current: pd.DataFrame, drop: list[str]) -> Judged:
    schema, clean = infer_and_validate(train, DataParams(drop=drop), "train")
    rng = np.random.default_rng(1)
    proba = np.column_stack([p := rng.uniform(size=len(clean)), 1 - p])
    profile = build_profile(schema, clean, 10, "churn", proba, model_sha256="a" * 64)
    batch = tmp_path / "current.parquet"
    current.to_parquet(batch, index=False)
    counts, source = incoming.tally(batch, profile)
    counts.add_scores("1", np.random.default_rng(2).uniform(size=len(current)) ** 2)
    return counts.report(Thresholds()).with_source(source), counts.distributions()


@pytest.fixture(scope="module")
def seasonal(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    train = synthetic.generate_customers(4000, 3)
    current = synthetic.generate_customers(2000, 4, "seasonal")
    return judge(tmp_path_factory.mktemp("seasonal"), train, current, ["customer_id"])


def test_the_page_fetches_nothing_and_names_no_url(seasonal: Judged) -> None:
    page = html.render(*seasonal)
    assert page.startswith("<!doctype html>")
    assert "http" not in page and "//" not in page.replace("://", "")
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=|@import|url\(", page)
    assert re.findall(r'href="([^"]*)"', page) == [
        f"#part-{name.replace(' ', '_')}"
        for name, _ in sorted(
            seasonal[0].parts(), key=lambda p: (-STATUSES.index(p[1].status), -(p[1].psi or 0))
        )
    ]


def test_the_verdict_comes_first_and_the_table_starts_with_the_worst(seasonal: Judged) -> None:
    report, distributions = seasonal
    page = html.render(report, distributions)
    assert page.index("<h1>Drift of churn: significant</h1>") < page.index("<table")
    # the scored probabilities of the fixture moved too (uniform, then its square)
    assert "3 of 11 flagged: monthly_charges, data_usage_gb, prediction 1" in page
    table = page[page.index("<tbody>") : page.index("</tbody>")]
    order = re.findall(r'<tr><td><a href="#[^"]+">([^<]+)</a>', table)
    assert order[:3] == ["data_usage_gb", "prediction 1", "monthly_charges"]  # by status, PSI
    assert sorted(order) == sorted(name for name, _ in report.parts())


def test_every_feature_and_scored_class_gets_a_chart_on_its_frozen_bins(seasonal: Judged) -> None:
    report, distributions = seasonal
    page = html.render(report, distributions)
    charts = re.findall(r'<svg class="dist" role="img" aria-label="([^"]+)"', page)
    assert charts == [*report.features, "prediction 1"]
    # contract: three categories and no unseen or missing rows on either side -> three bins
    contract = page[page.index('aria-label="contract"') :]
    contract = contract[: contract.index("</svg>")]
    assert re.findall(r"<title>([^:]+):", contract) == ["month-to-month", "one_year", "two_year"]
    assert len(re.findall(r'<rect class="(ref|cur)" x="[\d.]+" y="\d+"', contract)) == 2 + 6


def test_status_colors_are_the_status_module_s(seasonal: Judged) -> None:
    page = html.render(*seasonal)
    for status in STATUSES:
        assert f".s-{status}{{--c:{STATUS_COLORS[status]}}}" in page


def test_the_same_report_gives_the_same_bytes(seasonal: Judged) -> None:
    assert html.render(*seasonal) == html.render(*seasonal)


def test_user_text_is_escaped_and_a_missing_distribution_is_said(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 600
    sly = ['<script>alert("x")</script>', "a & b"]
    train = pd.DataFrame(
        {"x<y": rng.normal(size=n), "plan": rng.choice(sly, n), "churned": rng.integers(0, 2, n)}
    )
    report, distributions = judge(tmp_path, train, train.drop(columns="churned"), [])
    del distributions[prediction_part("1")]
    page = html.render(report, distributions)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert 'aria-label="x&lt;y"' in page and "a &amp; b" in page
    assert page.count("<script>") == 1  # the page's own sorting, nothing else
    assert "no distribution recorded" in page
