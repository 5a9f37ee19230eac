"""The champion gate's rule (verdicts in both metric directions), when two cards can be judged on
one set of rows, and compare.json's round trip: gate.py, pure."""

from __future__ import annotations

import msgspec
import pytest

from modelops import gate
from modelops.schema import CategoricalFeature, NumericFeature, Target
from tests.unit.test_registry_lineage import AGE, PLAN, card

COLUMNS = {"age", "plan", "churned"}  # the candidate's test rows


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((0.001, 0.007), "better"),
        ((-0.004, 0.003), "no_worse"),
        ((-0.005, 0.001), "no_worse"),  # exactly at the tolerance still counts as no worse
        ((-0.0051, 0.001), "worse"),
        ((-0.03, -0.019), "worse"),
        ((0.0, 0.0), "no_worse"),
    ],
)
def test_a_higher_is_better_metric_passes_unless_it_may_lose_more_than_the_tolerance(
    interval: tuple[float, float], verdict: str
) -> None:
    got, rule = gate.decide("roc_auc", "higher", interval, 0.005, 0.95)
    assert got == verdict and rule.startswith(f"{verdict}:")
    assert f"[{interval[0]:+.4g}, {interval[1]:+.4g}]" in rule and "95% interval" in rule


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((-0.02, -0.01), "better"),  # lower log loss is better
        ((-0.004, 0.004), "no_worse"),
        ((-0.01, 0.006), "worse"),
        ((0.01, 0.03), "worse"),
    ],
)
def test_a_lower_is_better_metric_is_judged_the_other_way_round(
    interval: tuple[float, float], verdict: str
) -> None:
    got, rule = gate.decide("log_loss", "lower", interval, 0.005, 0.9)
    assert got == verdict
    assert ("below 0" in rule) if verdict == "better" else True
    assert "90% interval" in rule


def test_a_worse_verdict_from_too_few_rows_says_so() -> None:
    verdict, rule = gate.decide("roc_auc", "higher", (-0.02, 0.025), 0.005, 0.95)
    assert verdict == "worse" and "wider than the tolerance" in rule and "more rows" in rule
    verdict, rule = gate.decide("roc_auc", "higher", (-0.03, -0.019), 0.005, 0.95)
    assert verdict == "worse" and "wider than the tolerance" not in rule


def test_cards_that_agree_on_target_classes_and_shared_features_are_comparable() -> None:
    champion = card([AGE, PLAN], [0, 1])
    assert gate.incompatibility(champion, champion, COLUMNS) is None
    # The candidate reads one more feature: each model reads its own columns of the same rows.
    visits = NumericFeature(name="visits", dtype="integer", nullable=False)
    candidate = card([AGE, PLAN, visits], [0, 1])
    assert gate.incompatibility(champion, candidate, COLUMNS | {"visits"}) is None


def test_each_incompatibility_is_named() -> None:
    champion = card([AGE, PLAN], [0, 1])
    recast = CategoricalFeature(name="age", categories=["young", "old"], nullable=True)
    why = gate.incompatibility(champion, card([recast, PLAN], [0, 1]), COLUMNS)
    assert why == "feature 'age' is numeric for the champion, categorical for the candidate"

    why = gate.incompatibility(champion, card([PLAN], [0, 1]), COLUMNS - {"age"})
    assert why == "the champion reads age, which the candidate's test rows lack"

    why = gate.incompatibility(champion, card([AGE, PLAN], [0, 1, 2]), COLUMNS)
    assert why == "the classes differ: champion [0, 1], candidate [0, 1, 2]"

    other = card([AGE, PLAN], [0, 1])
    schema = msgspec.structs.replace(
        other.feature_schema, target=Target(name="upgraded", classes=[0, 1], positive=1)
    )
    why = gate.incompatibility(
        champion, msgspec.structs.replace(other, feature_schema=schema), COLUMNS
    )
    assert why == "the champion predicts 'churned', the candidate 'upgraded'"


def test_compare_json_round_trips_and_its_summary_holds_only_the_columns() -> None:
    comparison = gate.Comparison(
        verdict="better",
        rule="better: ...",
        against="prod",
        champion=gate.ChampionRef("prod", "v1.0.0", "c" * 40, "m" * 32),
        candidate_md5="n" * 32,
        metric="roc_auc",
        direction="higher",
        min_delta=0.005,
        rows=6000,
        candidate_value=0.82,
        champion_value=0.81,
        delta=0.01,
        interval=gate.Interval(0.004, 0.016, 0.95, 1000, 7),
        metrics={"candidate": {"roc_auc": 0.82}, "champion": {"roc_auc": 0.81}},
    )
    assert gate.decode(gate.encode(comparison)) == comparison
    summary = msgspec.json.decode(gate.encode(comparison.summary()))
    assert summary == {"verdict": "better", "delta": 0.01, "low": 0.004, "high": 0.016}
    assert comparison.headline() == (
        "gate: better against v1.0.0 (holding prod) on roc_auc: +0.01 [+0.004, +0.016] at 95%"
    )
