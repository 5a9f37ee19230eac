"""Production performance, piece by piece: reading outcomes, the join, windows, the metrics and
the status rule."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from modelops.errors import DataValidationError
from modelops.evaluation import classification_metrics
from modelops.logline import PREDICTION_PREFIX, LoggedModel, LogLine, segment_name, utc_timestamp
from modelops.params import PerformanceParams
from modelops.performance import join, judge, log, outcomes
from modelops.performance.judge import Change, Model, Rule

DAY = 86_400


def _line(t: float, id_: str | None, p: float, version: str = "v1.0.0") -> LogLine:
    return LogLine(
        timestamp=utc_timestamp(t),
        request_id="r",
        model=LoggedModel("churn", version),
        inputs={},
        output={"label": int(p >= 0.5), "probabilities": {"0": 1 - p, "1": p}},
        id=id_,
    )


def _log(directory: Path, lines: list[LogLine]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(PREDICTION_PREFIX, 1.7e9, 1, 1)
    path.write_bytes(msgspec.json.Encoder().encode_lines(lines))
    return directory


def _outcomes(path: Path, rows: list[tuple[str, object, str]]) -> Path:
    pd.DataFrame(rows, columns=["id", "label", "observed_at"]).to_csv(path, index=False)
    return path


T0 = 1_736_121_600  # 2025-01-06T00:00:00Z, a Monday


def test_the_latest_prediction_before_the_outcome_is_judged_once_per_version(
    tmp_path: Path,
) -> None:
    lines = [
        _line(T0 + 10, "a", 0.2),  # superseded by the next prediction of a
        _line(T0 + 20, "a", 0.7),  # the one a's outcome judges (v1.0.0)
        _line(T0 + 30, "a", 0.4, "v1.1.0"),  # a under the other version: judged too
        _line(T0 + 5 * DAY, "a", 0.9),  # after the outcome: unlabelled
        _line(T0 + 40, "b", 0.3),
        _line(T0 + 50, None, 0.5),  # no id: never joined
    ]
    predictions = log.read(_log(tmp_path / "log", lines), "churn", ["0", "1"])
    known = outcomes.read(
        [
            _outcomes(
                tmp_path / "o.csv",
                [
                    ("a", 0, "2025-01-07T00:00:00Z"),  # replaced by the later report of a
                    ("a", 1, "2025-01-08T00:00:00Z"),
                    ("b", 0, "2025-01-06T00:00:39Z"),  # before b's only prediction
                    ("zz", 1, "2025-01-08T00:00:00Z"),  # never predicted
                ],
            )
        ]
    )
    assert (known.rows, known.replaced) == (4, 1)
    joined = join.join(predictions, known, ["0", "1"], join.window_ns("7d"))
    assert predictions.versions == ["v1.0.0", "v1.1.0"]
    assert joined.label.tolist() == [-1, 1, 1, -1, -1, -1]
    assert joined.joined == 1  # one outcome, judged under both versions
    assert (joined.unknown_id.count, joined.unknown_id.examples) == (1, ["zz"])
    assert (joined.before_prediction.count, joined.before_prediction.examples) == (1, ["b"])
    assert joined.window.tolist() == [2870] * 6


def test_windows_start_on_utc_mondays_or_midnights() -> None:
    assert join.window_start(2870, join.window_ns("7d")) == "2025-01-06T00:00:00Z"
    assert join.window_start(20091, join.window_ns("1d")) == "2025-01-07T00:00:00Z"
    assert join.window_ns("12h") == 12 * 3600 * 10**9
    with pytest.raises(ValueError, match="not '7 days'"):
        join.window_ns("7 days")


def test_labels_outside_the_classes_are_counted_with_the_labels_named(tmp_path: Path) -> None:
    predictions = log.read(
        _log(tmp_path / "log", [_line(T0, "a", 0.2), _line(T0, "b", 0.6)]), "churn", ["0", "1"]
    )
    known = outcomes.read(
        [
            _outcomes(
                tmp_path / "o.csv",
                [("a", "maybe", "2025-01-07T00:00:00Z"), ("b", 1, "2025-01-07T00:00:00Z")],
            )
        ]
    )
    joined = join.join(predictions, known, ["0", "1"], join.window_ns("1d"))
    assert (joined.label_outside_classes.count, joined.label_outside_classes.examples) == (
        1,
        ["maybe"],
    )
    assert joined.label.tolist() == [-1, 1] and joined.joined == 1


def test_csv_and_parquet_outcomes_read_alike_and_integer_ids_become_text(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": [17, 18, 19],
            "label": [1, 0, 1],
            "observed_at": pd.to_datetime(
                ["2025-01-07T10:00:00Z", "2025-01-07T12:00:00+02:00", "2025-01-08T00:00:00Z"],
                utc=True,
            ),
            "note": ["x", "y", "z"],
        }
    )
    frame.to_parquet(tmp_path / "o.parquet", index=False)
    frame.assign(
        observed_at=["2025-01-07T10:00:00Z", "2025-01-07T10:00:00Z", "2025-01-08T00:00:00Z"]
    ).to_csv(tmp_path / "o.csv", index=False)
    a, b = outcomes.read([tmp_path / "o.parquet"]), outcomes.read([tmp_path / "o.csv"])
    assert a.ids.tolist() == b.ids.tolist() == ["17", "18", "19"]
    assert a.labels.tolist() == b.labels.tolist() == ["1", "0", "1"]
    assert a.observed.tolist() == b.observed.tolist()


def test_outcome_files_with_gaps_missing_columns_or_zoneless_times_are_refused(
    tmp_path: Path,
) -> None:
    path = _outcomes(tmp_path / "o.csv", [("a", 1, "2025-01-07T10:00:00"), ("b", 1, "2025-01-07")])
    with pytest.raises(DataValidationError) as info:
        outcomes.read([path])
    assert "column 'observed_at': 2 values are not ISO-8601 times with a zone" in str(info.value)
    assert "(rows 1, 2)" in str(info.value)

    pd.DataFrame(
        {"id": ["a", ""], "label": [1, 0], "observed_at": ["2025-01-07T10:00:00Z"] * 2}
    ).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"column 'id': 1 values are missing \(rows 2\)"):
        outcomes.read([path])

    pd.DataFrame({"id": ["a"], "outcome": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataValidationError) as info:
        outcomes.read([tmp_path / "x.parquet"])
    assert "column 'label': missing from the outcomes file" in str(info.value)
    assert "column 'observed_at': missing from the outcomes file" in str(info.value)

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("?")
    with pytest.raises(DataValidationError, match="unexpected file"):
        outcomes.read([tmp_path / "d"])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("metric", judge.METRICS)
def test_a_resample_is_scored_exactly_as_classification_metrics_scores_it(
    metric: judge.Metric, n_classes: int
) -> None:
    rng = np.random.default_rng(n_classes)
    proba = rng.dirichlet(np.ones(n_classes), 500)
    classes = list(range(n_classes))
    y = np.array([rng.choice(n_classes, p=p) for p in proba], dtype=np.int64)
    model = Model(classes, 1 if n_classes == 2 else None, 0.4)
    expected = classification_metrics(y, proba, classes, model.positive, 0.4)
    key = judge.metric_key(metric, n_classes)
    assert judge.score(metric, y, proba, model) == pytest.approx(expected[key], abs=5e-7)


def _change(value: float, low: float, high: float, test: float = 0.8) -> Change:
    return Change("roc_auc", test, value, value - test, low, high, test - value)


@pytest.mark.parametrize(
    ("labels", "complete", "change", "expected"),
    [
        (199, True, _change(0.5, -0.4, -0.2), "insufficient_data"),  # too few labels
        (500, False, None, "insufficient_data"),  # a class absent
        (500, True, None, "insufficient_data"),  # no test metrics
        (500, True, _change(0.70, -0.15, -0.05), "degraded"),
        (500, True, _change(0.70, -0.2, +0.01), "ok"),  # the interval includes no change
        (500, True, _change(0.77, -0.06, -0.01), "ok"),  # worse, but within max_drop
        (500, True, _change(0.90, +0.05, +0.15), "ok"),  # better
    ],
)
def test_the_status_rule(labels: int, complete: bool, change: Change | None, expected: str) -> None:
    rule = Rule.from_params(PerformanceParams(metric="roc_auc", max_drop=0.05, min_labels=200))
    assert judge.status(labels, rule, complete, change)[0] == expected


def test_for_a_loss_higher_is_worse() -> None:
    rule = Rule.from_params(PerformanceParams(metric="log_loss", max_drop=0.05, min_labels=1))
    worse = Change("log_loss", 0.45, 0.60, 0.15, 0.08, 0.22, 0.15)
    better = Change("log_loss", 0.45, 0.30, -0.15, -0.22, -0.08, -0.15)
    assert judge.status(10, rule, True, worse)[0] == "degraded"
    assert judge.status(10, rule, True, better)[0] == "ok"


def test_the_bootstrap_is_seeded_and_its_interval_covers_the_change() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(800)
    y_index = (rng.random(800) < p).astype(np.int64)
    proba = np.column_stack([1 - p, p])
    model = Model([0, 1], 1, 0.5)
    rule = Rule.from_params(PerformanceParams(resamples=300))
    a = judge.change(y_index, proba, model, rule, 0.9, judge.seed_of(7, "v1.0.0", 2903))
    b = judge.change(y_index, proba, model, rule, 0.9, judge.seed_of(7, "v1.0.0", 2903))
    c = judge.change(y_index, proba, model, rule, 0.9, judge.seed_of(7, "v1.1.0", 2903))
    assert a == b and a != c
    assert a.low < a.change < a.high and a.worse_by == pytest.approx(-a.change)


def test_the_auc_of_every_resample_from_one_sort_equals_sklearn_s() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 40, 600) / 40  # many ties
    positive = rng.random(600) < scores
    counts = rng.multinomial(600, np.full(600, 1 / 600), 8)
    fast = judge.auc_resamples(positive, scores, counts)
    for b, c in enumerate(counts):
        pick = np.repeat(np.arange(600), c)
        assert fast[b] == pytest.approx(roc_auc_score(positive[pick], scores[pick]), abs=1e-12)
