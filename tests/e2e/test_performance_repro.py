"""The performance stage in a real git + DVC repository: a registered version's log is judged against
the metrics committed at its registry tag, not the workspace's, and `dvc repro` sees new rows."""

from __future__ import annotations

import json
from pathlib import Path

from modelops import files, paths
from tests.conftest import copy_repo, edit_file, run


def test_a_served_version_is_judged_against_the_metrics_of_its_registry_tag(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    run("modelops", "registry", "register", "--version", "v1.0.0", cwd=repo)
    tagged = json.loads(run("git", "show", "churn@v1.0.0:metrics/metrics.json", cwd=repo).stdout)

    # The workspace moves on (another threshold, so other metrics), uncommitted; the server keeps
    # answering as v1.0.0. Its log: the demo rows, logged by that version.
    edit_file(repo / "params.yaml", "threshold: 0.5 ", "threshold: 0.3 ")
    incoming = repo / paths.INCOMING
    incoming.mkdir()
    for segment in sorted((repo / paths.DEMO_PREDICTIONS).iterdir()):
        text = segment.read_text().replace('"version":"workspace"', '"version":"v1.0.0"')
        (incoming / segment.name).write_text(text)
    edit_file(
        repo / "params.yaml",
        "predictions: data/demo/predictions",
        "predictions: data/incoming",
    )
    run("dvc", "repro", "performance", cwd=repo)
    workspace = files.read_json(repo / paths.METRICS)
    assert workspace["threshold"] == 0.3 and workspace != tagged

    report = files.read_json(repo / paths.PERFORMANCE)
    version = report["versions"]["v1.0.0"]
    assert version["baseline"]["metrics"] == tagged
    assert version["baseline"]["source"].startswith("registry churn@v1.0.0 (commit ")
    assert version["status"] == report["status"] == "degraded"
    out = run("modelops", "performance", "check", "--fail-on", "degraded", cwd=repo, check=False)
    assert out.returncode == 3 and "version v1.0.0: degraded" in out.stdout

    # A new segment is a changed dependency: DVC re-runs the stage, which reads it.
    assert "performance" not in run("dvc", "status", "performance", cwd=repo).stdout
    first = sorted(incoming.iterdir())[0]
    (incoming / first.name.replace("-000001.", "-000099.")).write_bytes(first.read_bytes())
    assert "performance" in run("dvc", "status", "performance", cwd=repo).stdout
    run("dvc", "repro", "performance", cwd=repo)
    assert files.read_json(repo / paths.PERFORMANCE)["predictions"] == report["predictions"] + len(
        first.read_text().splitlines()
    )
