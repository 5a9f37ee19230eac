"""The log formats: an instance id that leaves old lines byte-identical, feedback lines, and the
segment names that keep predictions and outcomes apart in one directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest

from modelops import synthetic
from modelops.drift import incoming
from modelops.drift.profile import Profile, build_profile
from modelops.errors import DataValidationError
from modelops.logline import (
    FEEDBACK_PREFIX,
    PREDICTION_PREFIX,
    FeedbackLine,
    LoggedModel,
    LogLine,
    Outcome,
    segment_kind,
    segment_name,
)
from modelops.params import DataParams
from modelops.schema import FeatureSchema, infer_and_validate
from tests.drift_files import records

SEED = 13
# A line exactly as the server wrote it before lines could carry an id (README.md shows it).
OLD_LINE = (
    b'{"timestamp":"2026-11-27T05:08:14.804315Z","request_id":"038b2554","model":{"name":"churn",'
    b'"version":"v1.0.0"},"inputs":{"tenure_months":3.0,"contract":"month-to-month"},'
    b'"output":{"label":1,"probabilities":{"0":0.14484146003998477,"1":0.8551585399600152}}}'
)


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureSchema, Profile]:
    raw = synthetic.generate_customers(4000, SEED)
    schema, clean = infer_and_validate(raw, DataParams(drop=["customer_id"]), "train")
    p1 = np.random.default_rng(SEED).beta(2, 5, len(clean))
    return schema, build_profile(schema, clean, 10, "churn", np.column_stack([1 - p1, p1]))


def test_a_line_without_an_id_encodes_exactly_as_before_and_one_with_an_id_adds_the_key() -> None:
    line = msgspec.json.decode(OLD_LINE, type=LogLine)
    assert line.id is None
    assert msgspec.json.encode(line) == OLD_LINE
    with_id = msgspec.structs.replace(line, id="C-17")
    assert msgspec.json.encode(with_id) == OLD_LINE[:-1] + b',"id":"C-17"}'


def _lines(frame, names, ids: bool) -> bytes:  # type: ignore[no-untyped-def]
    p1 = np.linspace(0.05, 0.95, len(frame))
    lines = [
        LogLine(
            timestamp=f"2026-11-27T10:00:{i % 60:02d}.000000Z",
            request_id=f"r{i}",
            model=LoggedModel("churn", "v1.0.0"),
            inputs=inputs,
            output={"label": int(p >= 0.5), "probabilities": {"0": 1 - p, "1": p}},
            id=f"C{i}" if ids else None,
        )
        for i, (inputs, p) in enumerate(zip(records(frame, names), p1.tolist(), strict=True))
    ]
    return msgspec.json.Encoder().encode_lines(lines)


def test_the_drift_reader_counts_lines_with_and_without_ids_alike(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(700, SEED, "no_drift")
    old, new = tmp_path / "old", tmp_path / "new"
    for directory, ids in ((old, False), (new, True)):
        directory.mkdir()
        (directory / segment_name(PREDICTION_PREFIX, 1.8e9, 7, 1)).write_bytes(
            _lines(frame, schema.names, ids)
        )
    a, source_a = incoming.tally(old, profile)
    b, source_b = incoming.tally(new, profile)
    assert a.rows == b.rows == 700 and source_a == msgspec.structs.replace(source_b, path=str(old))
    for name in profile.features:
        assert np.array_equal(a.features[name], b.features[name])
    assert np.array_equal(a.predictions["1"], b.predictions["1"])


def test_feedback_segments_beside_the_log_are_skipped_and_unknown_jsonl_files_refused(
    tmp_path: Path, trained: tuple[FeatureSchema, Profile]
) -> None:
    schema, profile = trained
    frame = synthetic.generate_customers(400, SEED, "no_drift")
    (tmp_path / segment_name(PREDICTION_PREFIX, 1.8e9, 7, 1)).write_bytes(
        _lines(frame, schema.names, True)
    )
    feedback = tmp_path / segment_name(FEEDBACK_PREFIX, 1.8e9, 7, 1)
    outcome = Outcome("C1", 1, datetime(2026, 12, 1, tzinfo=UTC))
    feedback.write_bytes(msgspec.json.encode(FeedbackLine.of(outcome, 1.8e9, "f1")) + b"\n")
    counts, source = incoming.tally(tmp_path, profile)
    assert counts.rows == 400 and source.files == 1

    with pytest.raises(DataValidationError, match="is a feedback segment"):
        incoming.tally(feedback, profile)
    (tmp_path / "export.jsonl").write_bytes(_lines(frame, schema.names, True))
    with pytest.raises(DataValidationError, match=r"unknown \.jsonl file.*predictions-\*\.jsonl"):
        incoming.tally(tmp_path, profile)
    # Named on its own, a .jsonl file is read as prediction-log lines whatever its name.
    assert incoming.tally(tmp_path / "export.jsonl", profile)[0].rows == 400


def test_segment_names_say_what_a_segment_holds() -> None:
    name = segment_name(FEEDBACK_PREFIX, 1_796_000_000.9, 41, 3)
    assert name == "feedback-20261130T005320-41-000003.jsonl"
    assert segment_kind(name) == "feedback"
    assert segment_kind("predictions-20261130T021320-41-000003.jsonl") == "predictions"
    assert segment_kind("predictions-20261130T021320-41-000003.jsonl.open") is None
    assert segment_kind("batch.jsonl") is None


def test_an_outcome_needs_a_zoned_time_and_its_feedback_line_is_in_utc() -> None:
    outcome = msgspec.json.decode(
        b'{"id": "C1", "label": "1", "observed_at": "2026-12-01T09:30:00+02:00"}', type=Outcome
    )
    line = FeedbackLine.of(outcome, 1_796_000_000.25, "req-9")
    assert msgspec.json.encode(line) == (
        b'{"id":"C1","label":"1","observed_at":"2026-12-01T07:30:00.000000Z",'
        b'"received_at":"2026-11-30T00:53:20.250000Z","request_id":"req-9"}'
    )
    for bad in (
        b'{"id": "C1", "label": 1, "observed_at": "2026-12-01T09:30:00"}',  # no zone
        b'{"id": "", "label": 1, "observed_at": "2026-12-01T09:30:00Z"}',  # empty id
        b'{"id": "C1", "label": 1, "observed_at": "2026-12-01T09:30:00Z", "x": 1}',
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(bad, type=Outcome)
