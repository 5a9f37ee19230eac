"""The simulate and performance stages, run as DVC runs them (main() in a project directory) on the
demo log of the bundled generator: a concept change that drift cannot see, late and missing
labels, outcomes that cannot be joined, and feedback segments in place of an outcomes file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from modelops.cli import main as cli
from modelops.drift import incoming
from modelops.drift.profile import Profile
from modelops.logline import FEEDBACK_PREFIX, FeedbackLine, Outcome, segment_name
from modelops.performance import demo
from modelops.stages import performance, simulate

CHANGE = datetime.fromtimestamp(demo.START.timestamp() + demo.CHANGE_DAY * 86_400, UTC)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, trained_workspace: Path) -> Iterator[Path]:
    """A trained workspace with the demo log and outcomes simulate writes, built once."""
    root = shutil.copytree(trained_workspace, tmp_path_factory.mktemp("perf") / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        simulate.main()
    shutil.copy(root / "params.yaml", root / "params.orig.yaml")
    yield root


def judge(project: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> dict[str, Any]:
    """Run the performance stage with `overrides` of the project's params performance.*; its
    report."""
    monkeypatch.chdir(project)
    params = yaml.safe_load((project / "params.orig.yaml").read_text())
    params["performance"] = {**params.get("performance", {}), **overrides}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    performance.main()
    return files.read_json(paths.PERFORMANCE)  # type: ignore[no-any-return]


def _after_change(window: dict[str, Any]) -> bool:
    return window["start"] >= CHANGE.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_concept_change_is_caught_by_performance_and_missed_by_drift(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = judge(project, monkeypatch)
    version = report["versions"]["workspace"]
    judged = [w for w in version["windows"] if w["status"] != "insufficient_data"]
    assert [w["status"] for w in judged if not _after_change(w)] == ["ok"] * 4
    assert [w["status"] for w in judged if _after_change(w)] == ["degraded"] * 3
    for w in judged:
        assert (
            w["change"]["metric"] == "roc_auc" and w["metrics"]["roc_auc"] == w["change"]["value"]
        )
        if _after_change(w):
            assert w["change"]["change"] < -0.1 and w["change"]["high"] < 0
    assert version["status"] == report["status"] == "degraded"
    assert version["baseline"]["metrics"] == files.read_json(paths.METRICS)

    # The same rows, judged by drift: all of them, and those after the change alone.
    profile = Profile.decode(paths.PROFILE.read_bytes())
    after = tmp_path / "after"
    after.mkdir()
    for segment in sorted(paths.DEMO_PREDICTIONS.iterdir()):
        if segment.name >= f"predictions-{CHANGE:%Y%m%d}":
            shutil.copy(segment, after / segment.name)
    for rows in (paths.DEMO_PREDICTIONS, after):
        counts, _ = incoming.tally(rows, profile)
        drift = counts.report(thresholds_of(project))
        assert drift.status == "stable", drift.flagged()

    capsys.readouterr()
    assert cli(["performance", "check"]) == 0
    assert cli(["performance", "check", "--fail-on", "degraded"]) == 3
    assert "overall: degraded" in capsys.readouterr().out


def thresholds_of(project: Path):  # type: ignore[no-untyped-def]
    from modelops.drift.status import Thresholds
    from modelops.params import load

    return Thresholds.from_params(load(project / "params.yaml").drift)


def test_late_and_missing_labels_lower_coverage_and_leave_recent_windows_unjudged(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = judge(project, monkeypatch)
    windows = report["versions"]["workspace"]["windows"]
    known = pd.read_csv(project / paths.DEMO_OUTCOMES)
    assert report["outcomes"]["rows"] == report["outcomes"]["joined"] == len(known)
    assert sum(w["labels"] for w in windows) == len(known)
    assert sum(w["predictions"] for w in windows) == report["predictions"] == demo.ROWS
    for w in windows:
        assert w["coverage"] == round(w["labels"] / w["predictions"], 6)
    # Outcomes take 1-5 weeks and a tenth never come: full weeks first, then fewer and fewer.
    coverage = [w["coverage"] for w in windows]
    assert all(demo.ARRIVAL - 0.04 < c < demo.ARRIVAL + 0.04 for c in coverage[:3])
    assert coverage[3:] == sorted(coverage[3:], reverse=True) and coverage[-1] == 0
    assert windows[-1]["status"] == "insufficient_data" and windows[-1]["metrics"] is None
    assert "0 labels, fewer than min_labels (200)" in windows[-1]["reason"]

    # Fewer windows have enough labels: the version's status is that of the latest judged one.
    stricter = judge(project, monkeypatch, min_labels=1000)["versions"]["workspace"]
    statuses = [w["status"] for w in stricter["windows"]]
    assert statuses[-3:] == ["insufficient_data"] * 3 and statuses[-4] == "degraded"
    assert stricter["status"] == "degraded"


def test_unknown_ids_and_labels_outside_the_classes_are_counted_not_dropped(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean = judge(project, monkeypatch)
    known = pd.read_csv(project / paths.DEMO_OUTCOMES)
    extra = pd.DataFrame(
        {
            "id": ["ghost-1", "ghost-2", known["id"].iat[0], "ghost-3"],
            "label": [1, 0, "churned?", 1],
            "observed_at": ["2025-02-01T00:00:00Z"] * 4,
        }
    )
    # The known id's second report replaces its first: it is the label outside the classes now.
    pd.concat([known, extra]).to_csv(tmp_path / "outcomes.csv", index=False)
    report = judge(project, monkeypatch, outcomes=str(tmp_path / "outcomes.csv"))
    o = report["outcomes"]
    assert o["rows"] == len(known) + 4 and o["replaced"] == 1
    assert o["unknown_id"] == {"count": 3, "examples": ["ghost-1", "ghost-2", "ghost-3"]}
    assert o["label_outside_classes"] == {"count": 1, "examples": ["churned?"]}
    assert o["joined"] == len(known) - 1
    labels = sum(w["labels"] for w in report["versions"]["workspace"]["windows"])
    assert labels == sum(w["labels"] for w in clean["versions"]["workspace"]["windows"]) - 1


def test_outcomes_as_feedback_segments_beside_the_log_give_the_file_s_metrics(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from_file = judge(project, monkeypatch)
    # A server's log directory: the prediction segments, and feedback segments beside them.
    log = shutil.copytree(project / paths.DEMO_PREDICTIONS, tmp_path / "incoming")
    known = pd.read_csv(project / paths.DEMO_OUTCOMES)
    encoder = msgspec.json.Encoder()
    for day, rows in known.groupby(known["observed_at"].str[:10]):
        received = datetime.fromisoformat(f"{day}T23:59:59+00:00").timestamp()
        lines = [
            FeedbackLine.of(
                msgspec.convert({"id": i, "label": int(y), "observed_at": t}, Outcome),
                received,
                f"feedback-{day}",
            )
            for i, y, t in rows[["id", "label", "observed_at"]].itertuples(index=False)
        ]
        (log / segment_name(FEEDBACK_PREFIX, received, 1, 1)).write_bytes(
            encoder.encode_lines(lines)
        )
    from_feedback = judge(project, monkeypatch, predictions=str(log), outcomes=str(log))
    assert from_feedback["versions"] == from_file["versions"]
    assert from_feedback["outcomes"]["joined"] == from_file["outcomes"]["joined"] == len(known)
    assert from_feedback["outcomes"]["files"] > 1 and from_file["outcomes"]["files"] == 1
    judge(
        project,
        monkeypatch,
        predictions=str(paths.DEMO_PREDICTIONS),
        outcomes=str(paths.DEMO_OUTCOMES),
    )


def test_a_version_without_test_metrics_is_reported_but_not_judged(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    for segment in (project / paths.DEMO_PREDICTIONS).iterdir():
        text = segment.read_text().replace('"version":"workspace"', '"version":"v7.0.0"')
        (log / segment.name).write_text(text)
    report = judge(project, monkeypatch, predictions=str(log))
    version = report["versions"]["v7.0.0"]
    assert version["baseline"]["metrics"] is None and version["baseline"]["note"]
    assert version["baseline"]["source"] == "registry churn@v7.0.0"
    assert {w["status"] for w in version["windows"]} == {"insufficient_data"}
    assert version["windows"][0]["metrics"]["roc_auc"] > 0.75  # measured all the same
    assert report["status"] == "insufficient_data"
