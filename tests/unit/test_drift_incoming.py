"""Reading incoming rows: parquet, CSV and prediction-log segments, from a file or a directory."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from modelops import synthetic
from modelops.drift import incoming
from modelops.drift.bins import encode
from modelops.drift.profile import NumericProfile, Profile, build_profile
from modelops.drift.report import Tally
from modelops.drift.status import Thresholds
from modelops.errors import DataValidationError
from modelops.logline import SHADOW, LogLine
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate
from tests.drift_files import write_segment

SEED = 11


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureSchema, Profile]:
    raw = synthetic.generate_customers(8000, SEED)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    p1 = np.random.default_rng(SEED).beta(2, 5, len(clean))
    profile = build_profile(schema, clean, 10, "churn", np.column_stack([1 - p1, p1]))
    return schema, profile


def _expected(schema: FeatureSchema, profile: Profile, frame: pd.DataFrame) -> Tally:
    """The counts of `frame` added column by column, without any file in between."""
    tally = Tally(profile)
    tally.add_rows(len(frame))
    model = schema.to_model_frame(frame)
    for name, p in profile.features.items():
        if isinstance(p, NumericProfile):
            tally.add_numeric(name, model[name].to_numpy(np.float64))
        else:
            tally.add_codes(name, *encode(model[name].tolist()))
    return tally


def _same_counts(a: Tally, b: Tally) -> bool:
    return a.rows == b.rows and all(
        np.array_equal(a.features[n], b.features[n]) for n in a.features
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_parquet_and_csv_count_exactly_like_the_columns_counted_directly(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile], suffix: str
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(3000, SEED, "new_region")
    path = tmp_path / f"batch{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    counts, source = incoming.tally(path, profile, batch_rows=1000)  # several batches
    assert _same_counts(counts, _expected(schema, profile, frame))
    assert (source.files, source.served_versions) == (1, {})
    assert counts.report(Thresholds()).predictions == {}  # no probabilities, no scorer


def test_prediction_log_gives_feature_and_prediction_drift(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(1200, SEED, "campaign")
    p1 = np.random.default_rng(1).beta(5, 2, len(frame))
    logs = tmp_path / "incoming"
    logs.mkdir()
    write_segment(
        logs / "predictions-20261127T100000-41-0.jsonl", frame[:700], schema.names, p1[:700]
    )
    write_segment(
        logs / "predictions-20261127T110000-41-1.jsonl",
        frame[700:],
        schema.names,
        p1[700:],
        "1.1.0",
    )
    # Still being written by the server: must not be read half-way.
    write_segment(
        logs / "predictions-20261127T120000-41-2.jsonl.open", frame[:5], schema.names, p1[:5]
    )
    counts, source = incoming.tally(logs, profile)
    assert _same_counts(counts, _expected(schema, profile, frame))
    assert counts.predictions["1"].sum() == 1200
    assert source.files == 2
    assert source.served_versions == {"1.0.0": 700, "1.1.0": 500}
    assert source.first_timestamp == "2026-11-27T10:00:00.000Z"
    report = counts.report(Thresholds())
    assert report.predictions["1"].status == "significant"
    assert {"age", "contract"} <= set(report.flagged())


def test_shadow_rows_in_a_log_are_not_counted_as_traffic(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(400, SEED, "no_drift")
    p1 = np.random.default_rng(2).beta(2, 5, len(frame))
    segment = tmp_path / "predictions-20261127T100000-41-0.jsonl"
    write_segment(segment, frame, schema.names, p1)
    answered = segment.read_bytes().splitlines(keepends=True)
    # The same requests scored again by a shadow (campaign rows, certain answers), interleaved with
    # the answered ones; and a canary's answers, which are traffic.
    scenario = synthetic.generate_customers(400, SEED, "campaign")
    write_segment(tmp_path / "shadow", scenario, schema.names, np.full(400, 0.99), "1.1.0")
    shadow = [
        line.replace(b"}}\n", b'},"role":"shadow"}\n')
        for line in (tmp_path / "shadow").read_bytes().splitlines(keepends=True)
    ]
    assert msgspec.json.decode(shadow[0], type=LogLine).role == SHADOW
    canary = answered[300:]
    canary = [line.replace(b"}}\n", b'},"role":"canary"}\n') for line in canary]
    segment.write_bytes(
        b"".join(a for pair in zip(answered[:300], shadow[:300], strict=True) for a in pair)
        + b"".join(canary + shadow[300:])
    )
    counts, source = incoming.tally(tmp_path / segment.name, profile)
    assert _same_counts(counts, _expected(schema, profile, frame))
    assert counts.predictions["1"].sum() == 400
    assert source.served_versions == {"1.0.0": 400}


def test_rows_without_logged_probabilities_are_scored_when_a_scorer_is_given(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(500, SEED, "no_drift")
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    seen: list[pd.DataFrame] = []

    def scorer(model_frame: pd.DataFrame) -> dict[str, np.ndarray]:
        seen.append(model_frame)
        return {"1": np.full(len(model_frame), 0.3)}

    counts, _ = incoming.tally(tmp_path / "batch.parquet", profile, scorer=scorer)
    assert counts.predictions["1"].sum() == 500
    model = pd.concat(seen, ignore_index=True)
    pd.testing.assert_frame_equal(model, schema.to_model_frame(frame), check_dtype=True)


def test_directory_mixes_formats_in_path_order_and_skips_hidden_files(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(900, SEED, "no_drift")
    (tmp_path / "2026-11").mkdir()
    frame[:300].to_parquet(tmp_path / "a.parquet", index=False)
    frame[300:600].to_csv(tmp_path / "2026-11" / "b.csv", index=False)
    segment = "predictions-20261127T100000-1-000001.jsonl"
    write_segment(tmp_path / segment, frame[600:], schema.names, np.full(300, 0.2))
    (tmp_path / ".gitignore").write_text("*\n")
    assert [p.name for p in incoming.discover(tmp_path)] == ["b.csv", "a.parquet", segment]
    counts, source = incoming.tally(tmp_path, profile)
    assert _same_counts(counts, _expected(schema, profile, frame))
    assert source.files == 3 and counts.predictions["1"].sum() == 300


def test_an_empty_segment_counts_as_no_rows(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    (tmp_path / "predictions-20261127T100000-1-0.jsonl").write_text("")
    counts, source = incoming.tally(tmp_path, profile)
    assert counts.rows == 0 and source.files == 0
    assert counts.report(Thresholds()).status == "insufficient_data"


def _error(path: Path, profile: Profile) -> str:
    with pytest.raises(DataValidationError) as info:
        incoming.tally(path, profile)
    return str(info.value)


def test_a_missing_feature_column_is_named_with_its_file(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    frame = synthetic.generate_customers(50, SEED, "no_drift").drop(columns=["age", "plan"])
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    message = _error(tmp_path / "b.parquet", profile)
    assert str(tmp_path / "b.parquet") in message
    assert "column 'age': missing from the file" in message
    assert "column 'plan': missing from the file" in message


def test_text_in_a_numeric_csv_column_is_named(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    frame = synthetic.generate_customers(50, SEED, "no_drift").astype({"monthly_charges": object})
    frame.loc[7, "monthly_charges"] = "lots"
    frame.to_csv(tmp_path / "b.csv", index=False)
    message = _error(tmp_path / "b.csv", profile)
    assert "column 'monthly_charges': cannot be read" in message and "'lots'" in message


def test_wrong_parquet_type_is_named(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    frame = synthetic.generate_customers(50, SEED, "no_drift")
    frame["age"] = "old"
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    message = _error(tmp_path / "b.parquet", profile)
    assert re.search(r"column 'age': holds \w*string values but the feature is numeric", message)


def test_malformed_log_lines_and_foreign_models_are_refused(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(5, SEED, "no_drift")
    bad = tmp_path / "bad" / "predictions-20261127T100000-1-0.jsonl"
    bad.parent.mkdir()
    write_segment(bad, frame, schema.names, np.full(5, 0.1))
    bad.write_text(bad.read_text() + "{not json\n")
    assert "is not a prediction-log segment" in _error(bad.parent, profile)

    other = tmp_path / "other.jsonl"
    write_segment(other, frame, schema.names, np.full(5, 0.1), model="upsell")
    message = _error(other, profile)
    assert "rows of model 'upsell' but the profile is of 'churn'" in message


def test_unknown_files_and_empty_directories_are_errors_not_silence(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    _, profile = trained
    assert "holds no batch files" in _error(tmp_path, profile)
    (tmp_path / "notes.txt").write_text("hello")
    assert "unsupported file type '.txt'" in _error(tmp_path, profile)
    assert "not found" in _error(tmp_path / "nope", profile)
