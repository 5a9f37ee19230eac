"""The candidate (this workspace's model) and the champion (the version champions.yaml names for
params' gate.against, fetched through the registry) in; both scored on the candidate's test rows,
their paired difference, DeLong's test and the gate's verdict out, as compare.json's Comparison."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.pipeline import Pipeline

from modelops import bootstrap, gate
from modelops.card import Card
from modelops.errors import ArtifactIntegrityError, ParamsError
from modelops.evaluation import DIRECTIONS, classification_metrics
from modelops.fitted import check_reference
from modelops.params import Params
from modelops.registry import bundle

_DIGITS = 6  # as evaluate rounds its metrics


class Contender(NamedTuple):
    card: Card
    pipeline: Pipeline


def fetch_champion(
    ref: gate.ChampionRef, name: str, workdir: Path, repo: Path = Path(".")
) -> Contender:
    """The champion's model, fetched and checked exactly as `modelops registry bundle` does (md5
    against its commit's dvc.lock, sha256 against its card, from the DVC cache or the default
    remote), then loaded and proven to give its card's reference predictions.

    It is found by the commit champions.yaml records, not by its tag: a temporary DVC experiment
    (`dvc exp run --temp`, `--queue`) runs in a copy of the repository that has no tags."""
    directory = workdir / "champion"
    pinned = bundle.Pinned(name, ref.version, ref.commit, [ref.stage])
    bundle.materialise_pinned(pinned, directory, repo)
    # Written and checked against the commit just now, in this stage's own directory.
    verified = bundle.verify(directory, bundle.manifest_sha256(directory))
    if verified.card.artifact.md5 != ref.model_md5:
        raise ArtifactIntegrityError(
            f"champions.yaml records model md5 {ref.model_md5} for {ref.version} (holding "
            f"{ref.stage}), but that version's model is {verified.card.artifact.md5}: its tag was "
            "moved. Run `modelops registry sync`, then `dvc repro`"
        )
    pipeline = joblib.load(io.BytesIO(bundle.read_model(directory, verified)))
    check_reference(pipeline, verified.card)
    return Contender(verified.card, pipeline)


def compare(
    params: Params,
    candidate: Contender,
    test: pd.DataFrame,
    ref: gate.ChampionRef | None,
    champion: Contender | None,
) -> gate.Comparison:
    """Judge the candidate against the champion on the candidate's test rows."""
    settings, card = params.gate, candidate.card
    schema = card.feature_schema
    y = schema.target_array(test)
    proba = candidate.pipeline.predict_proba(schema.to_model_frame(test))
    positive, threshold = schema.target.positive, params.evaluate.threshold
    metrics = classification_metrics(y, proba, card.classes, positive, threshold)
    direction = _direction(settings.metric, metrics)
    base: dict[str, Any] = dict(
        against=settings.against,
        champion=ref,
        candidate_md5=card.artifact.md5,
        metric=settings.metric,
        direction=direction,
        min_delta=settings.min_delta,
        rows=len(y),
        candidate_value=metrics[settings.metric],
        metrics={"candidate": metrics},
    )
    if ref is None or champion is None:
        return gate.Comparison(
            verdict="no_champion", rule=gate.no_champion_rule(settings.against), **base
        )
    why = gate.incompatibility(champion.card, card, set(map(str, test.columns)))
    if why is not None:
        return gate.Comparison(verdict="not_comparable", rule=f"not_comparable: {why}", **base)
    if champion.card.artifact.md5 == card.artifact.md5:
        zero = gate.Interval(0.0, 0.0, settings.confidence, 0, params.base.seed)
        base.update(champion_value=metrics[settings.metric], delta=0.0, interval=zero)
        base["metrics"]["champion"] = metrics
        return gate.Comparison(verdict="no_worse", rule=gate.same_model_rule(), **base)

    theirs = _aligned_proba(champion, test, card.classes)
    return _judge(params, y, proba, theirs, card, base)


def _judge(
    params: Params,
    y: npt.NDArray[Any],
    proba: npt.NDArray[np.float64],
    theirs: npt.NDArray[np.float64],
    card: Card,
    base: dict[str, Any],
) -> gate.Comparison:
    """Both models' metrics on the same rows, the paired interval, DeLong's test and the verdict."""
    settings, threshold = params.gate, params.evaluate.threshold
    positive = card.feature_schema.target.positive
    base["metrics"]["champion"] = champion_metrics = classification_metrics(
        y, theirs, card.classes, positive, threshold
    )
    found = bootstrap.paired_difference(
        settings.metric,
        y,
        proba,
        theirs,
        card.classes,
        positive,
        threshold,
        resamples=settings.bootstrap,
        confidence=settings.confidence,
        seed=params.base.seed,
    )
    low, high = round(found.low, _DIGITS), round(found.high, _DIGITS)
    verdict, rule = gate.decide(
        settings.metric, base["direction"], (low, high), settings.min_delta, settings.confidence
    )
    interval = gate.Interval(
        low, high, settings.confidence, settings.bootstrap, params.base.seed, found.undefined
    )
    return gate.Comparison(
        verdict=verdict,
        rule=rule,
        champion_value=champion_metrics[settings.metric],
        delta=round(found.delta, _DIGITS),
        interval=interval,
        delong=_delong(y, proba, theirs, card.classes, positive),
        **base,
    )


def _direction(metric: str, written: dict[str, Any]) -> gate.Direction:
    if metric not in written or metric not in DIRECTIONS:
        choices = ", ".join(k for k in written if k in DIRECTIONS)
        raise ParamsError(
            f"params.yaml: gate.metric: '{metric}' is not a metric evaluate writes for this "
            f"target; choose one of {choices}"
        )
    return DIRECTIONS[metric]


def _aligned_proba(
    champion: Contender, test: pd.DataFrame, classes: list[Any]
) -> npt.NDArray[np.float64]:
    """The champion's probabilities on the rows, its columns in the candidate's class order."""
    proba = champion.pipeline.predict_proba(champion.card.feature_schema.to_model_frame(test))
    theirs = [str(c) for c in champion.card.classes]
    return np.asarray(proba[:, [theirs.index(str(c)) for c in classes]], dtype=np.float64)


def _delong(
    y: npt.NDArray[Any],
    candidate: npt.NDArray[np.float64],
    champion: npt.NDArray[np.float64],
    classes: list[Any],
    positive: Any,
) -> gate.DeLongTest | None:
    if len(classes) != 2 or positive is None:
        return None
    pos = classes.index(positive)
    test = bootstrap.delong(y == positive, candidate[:, pos], champion[:, pos])
    return gate.DeLongTest(z=round(test.z, 4), p_value=float(f"{test.p_value:.4g}"))
