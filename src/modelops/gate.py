"""The champion gate's rules: the paired difference and its interval in, a verdict and the rule that
produced it out; whether two model cards can be judged on one set of rows; compare.json typed.

Pure and light (no numpy): the registry reads compare.json through these types at registration.
The numbers come from `bootstrap`; the stage that joins them is `modelops.stages.compare`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from modelops.card import Card

Verdict = Literal["better", "no_worse", "worse", "no_champion", "not_comparable"]
Direction = Literal["higher", "lower"]
REFUSED: frozenset[str] = frozenset({"worse"})  # what `modelops registry register` refuses


class ChampionRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The model a candidate is judged against: the version holding a stage, and its model's md5."""

    stage: str
    version: str
    commit: str
    model_md5: str


class Interval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The paired bootstrap's percentile interval of candidate minus champion."""

    low: float
    high: float
    confidence: float
    resamples: int
    seed: int
    undefined: int = 0  # resamples on which the metric had no value (left out)


class DeLongTest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """DeLong's test that the two ROC AUCs are equal (binary targets)."""

    z: float
    p_value: float


class Comparison(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """metrics/compare.json: the candidate against the champion, on the candidate's test rows."""

    verdict: Verdict
    rule: str  # the sentence that produced the verdict, with its numbers
    against: str  # params gate.against: the stage whose holder is the champion
    champion: ChampionRef | None
    candidate_md5: str  # the candidate's model.joblib, as dvc.lock records it
    metric: str
    direction: Direction
    min_delta: float
    rows: int
    candidate_value: float | None = None  # the gate metric of each model, on all rows
    champion_value: float | None = None
    delta: float | None = None  # candidate minus champion
    interval: Interval | None = None
    delong: DeLongTest | None = None
    metrics: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # model -> metrics

    def summary(self) -> Summary:
        low, high = (self.interval.low, self.interval.high) if self.interval else (None, None)
        return Summary(verdict=self.verdict, delta=self.delta, low=low, high=high)

    def headline(self) -> str:
        """One line for a tag message and a listing: the verdict, whom against, the numbers."""
        if self.champion is None:
            return f"gate: no_champion (no version held {self.against})"
        who = f"{self.champion.version} (holding {self.against})"
        if self.delta is None or self.interval is None:  # not comparable: the rule says why
            return f"gate: {self.rule.replace(': ', f' against {who}: ', 1)}"
        iv = self.interval
        return (
            f"gate: {self.verdict} against {who} on {self.metric}: {self.delta:+.4g} "
            f"[{iv.low:+.4g}, {iv.high:+.4g}] at {iv.confidence:.0%}"
        )

    def lines(self) -> list[str]:
        """What a person reads: the champion, both values, the difference and its interval."""
        if self.champion is None:
            return [f"no_champion: no version holds {self.against}", f"  rule: {self.rule}"]
        who = f"{self.champion.version} (holding {self.against})"
        out = [f"{self.verdict} against {who} on {self.metric} ({self.direction} is better)"]
        iv = self.interval
        if self.delta is not None and iv is not None and iv.resamples == 0:
            out.append(
                f"  the champion is this very model: {self.metric} {self.candidate_value:.6g}"
            )
        elif self.delta is not None and iv is not None:
            out.append(
                f"  candidate {self.candidate_value:.6g}  champion {self.champion_value:.6g}  "
                f"difference {self.delta:+.4g}  {iv.confidence:.0%} interval "
                f"[{iv.low:+.4g}, {iv.high:+.4g}] ({iv.resamples} paired resamples of "
                f"{self.rows} rows)"
            )
        if self.delong is not None:
            out.append(f"  DeLong: z {self.delong.z:+.3f}, p {self.delong.p_value:.3g}")
        out.append(f"  rule: {self.rule}")
        return out


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """metrics/gate.json: what `dvc metrics show` and `dvc exp show` put in columns."""

    verdict: Verdict
    delta: float | None
    low: float | None
    high: float | None


def decode(blob: bytes) -> Comparison:
    """compare.json bytes as a Comparison; msgspec.DecodeError says what does not fit."""
    return msgspec.json.decode(blob, type=Comparison)


def encode(comparison: Comparison | Summary) -> bytes:
    return msgspec.json.format(msgspec.json.encode(comparison)) + b"\n"


# ------------------------------------------------------------------------------------ the rule


def decide(
    metric: str,
    direction: Direction,
    interval: tuple[float, float],
    min_delta: float,
    confidence: float,
) -> tuple[Verdict, str]:
    """The verdict on a candidate whose paired interval of (candidate - champion) is `interval`.

    A candidate must show, at `confidence`, that it is not worse than the champion by more than
    `min_delta` (a non-inferiority test: the burden of proof is on the newcomer); it is better when
    the whole interval lies on the better side of 0.
    """
    low, high = interval
    # The gain: positive when the candidate is better, whichever way the metric points.
    gain_low, gain_high = (low, high) if direction == "higher" else (-high, -low)
    shown = f"{confidence:.0%} interval of candidate - champion {metric}, [{low:+.4g}, {high:+.4g}]"
    side, edge = ("above", -min_delta) if direction == "higher" else ("below", min_delta)
    if gain_low > 0:
        return "better", f"better: the {shown}, lies {side} 0"
    if gain_low >= -min_delta:
        return "no_worse", (
            f"no_worse: the {shown}, stays {side} {edge:+.4g} (gate.min_delta): "
            "any loss is within the tolerance"
        )
    rule = (
        f"worse: the {shown}, reaches past {edge:+.4g} (gate.min_delta): the candidate may be "
        "worse than the champion by more than the tolerance"
    )
    if (gain_high - gain_low) / 2 > min_delta and (gain_low + gain_high) / 2 >= -min_delta:
        rule += (
            "; the interval is wider than the tolerance, so these rows cannot tell: test on more "
            "rows or raise gate.min_delta"
        )
    return "worse", rule


def same_model_rule() -> str:
    return "no_worse: the champion is this very model (same md5); the difference is 0"


def no_champion_rule(stage: str) -> str:
    return (
        f"no_champion: no version holds stage '{stage}' ({_CHAMPIONS}); the first candidate passes"
    )


_CHAMPIONS = "champions.yaml"


def incompatibility(champion: Card, candidate: Card, columns: set[str]) -> str | None:
    """Why the champion cannot be judged on the candidate's test rows, or None when it can.

    Both must predict the same target with the same classes (and, for a binary target, score the
    same class); the rows must hold every feature the champion reads, and a feature both read must
    be of one kind. Features only the candidate reads are fine: each model reads its own columns.
    """
    from modelops.schema import NumericFeature  # loaded already: the cards were decoded with it

    old, new = champion.feature_schema, candidate.feature_schema
    problems = []
    if old.target.name != new.target.name:
        problems.append(
            f"the champion predicts '{old.target.name}', the candidate '{new.target.name}'"
        )
    elif sorted(map(str, champion.classes)) != sorted(map(str, candidate.classes)):
        problems.append(
            f"the classes differ: champion {champion.classes}, candidate {candidate.classes}"
        )
    elif old.target.positive != new.target.positive:
        problems.append(
            f"the champion scores class {old.target.positive!r}, the candidate {new.target.positive!r}"
        )
    missing = [f.name for f in old.features if f.name not in columns]
    if missing:
        problems.append(
            f"the champion reads {', '.join(missing)}, which the candidate's test rows lack"
        )
    kinds = {f.name: isinstance(f, NumericFeature) for f in new.features}
    for f in old.features:
        if f.name in kinds and kinds[f.name] != isinstance(f, NumericFeature):
            was, now = (
                ("numeric", "categorical") if kinds[f.name] is False else ("categorical", "numeric")
            )
            problems.append(
                f"feature '{f.name}' is {was} for the champion, {now} for the candidate"
            )
    return "; ".join(problems) or None
