"""`modelops serve --ref prod` in a real registry: the server bundles the stage's version first and
answers as that version; shadows and canaries named by registry refs are bundled and vouched for
the same way."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from modelops import files, paths
from tests.conftest import copy_repo, edit_file, run, tool_env
from tests.serve.conftest import start_server


@pytest.fixture
def registered(reproduced_repo: Path, tmp_path: Path) -> Path:
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    run("modelops", "registry", "register", "--version", "v1.0.0", cwd=repo)
    run("modelops", "registry", "promote", "v1.0.0", "--stage", "prod", cwd=repo)
    return repo


def test_serve_ref_prod_answers_as_the_registered_version(
    registered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in tool_env().items():
        monkeypatch.setenv(key, value)
    bundle_dir = tmp_path / "bundle"
    server = start_server(
        None, tmp_path, "--ref", "prod", "--bundle-dir", str(bundle_dir), cwd=registered
    )
    try:
        card = files.read_json(registered / paths.CARD)
        row = card["reference"]["rows"][0]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answer = http.post("/v1/predict", json={"instances": [row]})
            model = http.get("/v1/model").json()
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == "v1.0.0"
        body = answer.json()
        assert body["model"] == {
            "name": "churn",
            "version": "v1.0.0",
            "sha256": card["artifact"]["sha256"],
        }
        want = card["reference"]["probabilities"][0]
        got = [body["predictions"][0]["probabilities"][str(c)] for c in card["classes"]]
        assert got == pytest.approx(want, abs=1e-9)
        assert json.dumps(model).count("v1.0.0") >= 1
        manifest = files.read_json(bundle_dir / "bundle.json")
        assert manifest["version"] == "v1.0.0" and manifest["stages"] == ["prod"]
    finally:
        assert server.stop() == 0


@pytest.fixture
def two_versions(registered: Path) -> Path:
    """prod at churn@v1.0.0 and staging at churn@v1.1.0 (fewer boosting iterations)."""
    edit_file(registered / "params.yaml", "max_iter: 250", "max_iter: 120")
    run("dvc", "repro", "-q", cwd=registered)
    run("git", "add", "-A", cwd=registered)
    run("git", "commit", "-q", "-m", "fewer boosting iterations", cwd=registered)
    run("modelops", "registry", "register", "--version", "v1.1.0", cwd=registered)
    run("modelops", "registry", "promote", "v1.1.0", "--stage", "staging", cwd=registered)
    return registered


def test_shadows_and_canaries_named_by_registry_refs_are_bundled_and_vouched_for(
    two_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in tool_env().items():
        monkeypatch.setenv(key, value)
    card = files.read_json(two_versions / paths.CARD)  # v1.1.0's, the last one reproduced
    rows = card["reference"]["rows"][:5]
    for option, ref in (("--canary", "staging:100%"), ("--shadow", "churn@v1.1.0")):
        server = start_server(
            None, tmp_path / option[2:], "--ref", "prod", option, ref, cwd=two_versions
        )
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                answer = http.post("/v1/predict", json={"instances": rows})
                staged = http.get("/v1/model", params={"version": "v1.1.0"}).json()
                text = http.get("/metrics").text
        finally:
            assert server.stop() == 0
        assert answer.status_code == 200, answer.text
        assert staged["artifact"]["sha256"] == card["artifact"]["sha256"]
        role = option[2:]
        assert f'role="{role}"' in text and 'version="v1.1.0"' in text
        answered_by = answer.headers["X-Model-Version"]
        assert answered_by == ("v1.1.0" if role == "canary" else "v1.0.0")
        if role == "canary":
            got = [
                p["probabilities"][str(c)]
                for p in answer.json()["predictions"]
                for c in card["classes"]
            ]
            want = [p for row in card["reference"]["probabilities"][:5] for p in row]
            assert got == pytest.approx(want, abs=1e-9)
