"""The registry end to end: real git repos, real `dvc repro`, real `gto` and `dvc artifacts get`.

One module-scoped repository holds two reproduced, registered commits (churn@v1.0.0 and
churn@v1.1.0, which differ in max_iter); every test works on its own copy of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from modelops import cli, files, registry
from modelops.errors import ArtifactIntegrityError, RegistryError
from modelops.registry import bundle, git
from tests.conftest import copy_repo, edit_file, run, tool_env

pytestmark = pytest.mark.usefixtures("tool_environ")

NAME = "churn"


@dataclass(frozen=True)
class Template:
    repo: Path
    first: str  # commit of churn@v1.0.0
    second: str  # commit of churn@v1.1.0


@pytest.fixture(scope="module")
def template(reproduced_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Template:
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("registry") / "repo")
    # Through the console script, as a user would.
    run("modelops", "registry", "register", cwd=repo)
    first = head(repo)
    edit_file(repo / "params.yaml", "max_iter: 250", "max_iter: 120")
    run("dvc", "repro", "-q", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", "fewer boosting iterations", cwd=repo)
    run("modelops", "registry", "register", cwd=repo)
    return Template(repo=repo, first=first, second=head(repo))


@pytest.fixture
def repo(template: Template, tmp_path: Path) -> Path:
    return copy_repo(template.repo, tmp_path / "repo")


def head(repo: Path) -> str:
    return run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()


def tags(repo: Path) -> set[str]:
    return set(run("git", "tag", "--list", cwd=repo).stdout.split())


def modelops(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["registry", *args, "--repo", str(repo)])
    out, err = capsys.readouterr()
    return code, out, err


def lock_md5(repo: Path, rev: str) -> str:
    lock = yaml.safe_load(run("git", "show", f"{rev}:dvc.lock", cwd=repo).stdout)
    (md5,) = [
        o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model.joblib"
    ]
    return str(md5)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gto_view(repo: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What `gto show` says: stage -> version, and version -> the stages it holds."""
    overview = json.loads(run("gto", "show", "--json", cwd=repo).stdout)
    versions = json.loads(run("gto", "show", NAME, "--json", cwd=repo).stdout)
    return (
        overview[NAME]["stage"],
        {v["version"]: sorted(s["stage"] for s in v["stages"] if s["is_active"]) for v in versions},
    )


def dvc_artifact_md5(repo: Path, stage: str, dest: Path) -> str:
    run("dvc", "artifacts", "get", ".", NAME, "--stage", stage, "-o", dest, cwd=repo)
    return md5(dest / "model.joblib")


def assert_agrees_with_gto(repo: Path) -> None:
    ours = registry.read(repo)
    gto_stages, gto_versions = gto_view(repo)
    assert gto_stages == ours.stages
    assert gto_versions == {
        v.version: sorted(v.stages) for v in ours.versions if not v.deregistered
    }


# ------------------------------------------------------------------------------ register


def test_register_tags_head_with_gto_versions(template: Template) -> None:
    reg = registry.read(template.repo)
    assert [(v.version, v.commit) for v in reg.versions] == [
        ("v1.1.0", template.second),
        ("v1.0.0", template.first),
    ]
    # Annotated tags in GTO's grammar, and gto reads them as the same versions.
    assert run("git", "cat-file", "-t", "churn@v1.0.0", cwd=template.repo).stdout.strip() == "tag"
    assert_agrees_with_gto(template.repo)


def test_register_refuses_a_dirty_tree(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run("git", "commit", "-q", "--allow-empty", "-m", "nothing new", cwd=repo)
    (repo / "notes.txt").write_text("an untracked file\n")
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1
    assert "working tree is not clean" in err and "notes.txt" in err and "commit or stash" in err
    assert tags(repo) == before


def test_register_refuses_a_lock_that_does_not_match_params(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_file(repo / "params.yaml", "max_iter: 120", "max_iter: 90")
    run("git", "commit", "-q", "-am", "change params without reproducing", cwd=repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1
    assert "dvc.lock does not match" in err and "params.yaml" in err and "dvc repro" in err
    assert tags(repo) == before


def test_register_refuses_a_commit_without_metrics(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("git", "rm", "-q", "metrics/metrics.json", cwd=repo)
    run("git", "commit", "-q", "-m", "drop metrics", cwd=repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1
    assert "metrics/metrics.json is not committed" in err and "dvc repro" in err
    assert not any(t.startswith("churn@v1.2") for t in tags(repo))


def test_register_refuses_an_already_registered_commit_and_an_existing_tag(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1 and "already churn@v1.1.0" in err

    run("git", "commit", "-q", "--allow-empty", "-m", "docs only", cwd=repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register", "--version", "v1.0.0")
    assert code == 1 and "churn@v1.0.0 already exists" in err
    code, _, err = modelops(repo, capsys, "register", "--version", "1.2")
    assert code == 1 and "vMAJOR.MINOR.PATCH" in err
    assert tags(repo) == before


def test_register_bumps_the_part_asked_for(repo: Path) -> None:
    run("git", "commit", "-q", "--allow-empty", "-m", "docs only", cwd=repo)
    v = registry.register(repo, bump="patch", message="same model, new docs")
    assert (v.version, v.commit, v.message) == ("v1.1.1", head(repo), "same model, new docs")
    run("git", "commit", "-q", "--allow-empty", "-m", "more docs", cwd=repo)
    assert registry.register(repo).version == "v1.2.0"  # inputs unchanged: minor by default


# ---------------------------------------------------------------- promote and rollback


def test_promote_rollback_keep_history_and_agree_with_gto_and_dvc(
    repo: Path, template: Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1_md5, v2_md5 = lock_md5(repo, template.first), lock_md5(repo, template.second)
    assert v1_md5 != v2_md5

    assert modelops(repo, capsys, "promote", "v1.0.0", "--stage", "prod")[0] == 0
    assert modelops(repo, capsys, "promote", "churn@v1.1.0", "--stage", "prod")[0] == 0
    assert registry.read(repo).stages == {"prod": "v1.1.0"}
    assert_agrees_with_gto(repo)
    assert dvc_artifact_md5(repo, "prod", tmp_path / "got-v2") == v2_md5

    code, out, _ = modelops(repo, capsys, "rollback", "--stage", "prod")
    assert code == 0 and "v1.0.0 now holds prod (was v1.1.0)" in out
    assert registry.read(repo).stages == {"prod": "v1.0.0"}
    assert_agrees_with_gto(repo)
    assert dvc_artifact_md5(repo, "prod", tmp_path / "got-v1") == v1_md5

    # Stage tags are never deleted: every change is a new tag.
    assert {t for t in tags(repo) if t.startswith("churn#")} == {
        "churn#prod#1",
        "churn#prod!#2",
        "churn#prod#3",
        "churn#prod!#4",
        "churn#prod#5",
    }

    listed = json.loads(modelops(repo, capsys, "list", "--json")[1])
    assert listed["stages"] == {"prod": "v1.0.0"}
    assert [(e["action"], e["version"], e["stage"]) for e in listed["events"]] == [
        ("register", "v1.0.0", None),
        ("register", "v1.1.0", None),
        ("assign", "v1.0.0", "prod"),
        ("unassign", "v1.0.0", "prod"),
        ("assign", "v1.1.0", "prod"),
        ("unassign", "v1.1.0", "prod"),
        ("assign", "v1.0.0", "prod"),
    ]
    times = [e["time"] for e in listed["events"]]
    assert times == sorted(times) and len(set(times)) == len(times)

    code, text, _ = modelops(repo, capsys, "list")
    assert code == 0
    lines = text.splitlines()
    v1_row = next(line for line in lines if line.startswith("v1.0.0"))
    v2_row = next(line for line in lines if line.startswith("v1.1.0"))
    assert (
        " prod " in v1_row and template.first[:8] in v1_row and "hist_gradient_boosting" in v1_row
    )
    assert " prod " not in v2_row
    history = text[text.index("history") :]
    assert history.count("churn#prod") == 5 and "rollback" in history


def test_rollbacks_step_back_through_every_earlier_holder(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("git", "commit", "-q", "--allow-empty", "-m", "docs only", cwd=repo)
    registry.register(repo)  # v1.2.0
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        registry.promote(version, "prod", repo)

    assert registry.rollback("prod", repo).version == "v1.1.0"
    assert registry.rollback("prod", repo).version == "v1.0.0"
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "rollback", "--stage", "prod")
    assert code == 1 and "nothing to roll back to" in err
    assert tags(repo) == before
    assert_agrees_with_gto(repo)


def test_promote_refuses_a_version_gto_deregistered(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.0.0", "prod", repo)
    run("gto", "deprecate", NAME, "v1.0.0", cwd=repo)  # GTO's own deregistration tag
    reg = registry.read(repo)
    assert [v.version for v in reg.versions if v.deregistered] == ["v1.0.0"]
    assert reg.stages == {}  # a deregistered version holds nothing, for gto as for us
    assert_agrees_with_gto(repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "promote", "v1.0.0", "--stage", "prod")
    assert code == 1 and "deregistered" in err and "register a new version" in err
    assert tags(repo) == before
    assert "deregistered" in modelops(repo, capsys, "list")[1]


def test_deregister_withdraws_a_version_as_gto_reads_it(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.1.0", "prod", repo)
    code, out, _ = modelops(repo, capsys, "deregister", "v1.0.0", "-m", "trained on a bad export")
    assert code == 0 and "deregistered churn@v1.0.0" in out
    [tag] = [t for t in tags(repo) if "!" in t and t.startswith("churn@")]
    assert tag == "churn@v1.0.0!#2" and f"tag: {tag}" in out
    reg = registry.read(repo)
    assert [v.version for v in reg.versions if v.deregistered] == ["v1.0.0"]
    assert reg.stages == {"prod": "v1.1.0"}
    assert_agrees_with_gto(repo)  # gto no longer lists v1.0.0
    assert "deregistered" in modelops(repo, capsys, "list")[1]

    # Withdrawn means withdrawn: no stage, no bundle, no second deregistration.
    before = tags(repo)
    for args, message in [
        (("promote", "v1.0.0", "--stage", "staging"), "is deregistered"),
        (("bundle", "v1.0.0", "--out", str(tmp_path / "b")), "is deregistered"),
        (("deregister", "v1.0.0"), "already deregistered"),
        (("deregister", "v7.0.0"), "no version 'v7.0.0'"),
    ]:
        code, _, err = modelops(repo, capsys, *args)
        assert code == 1 and message in err, args
    assert tags(repo) == before and not (tmp_path / "b").exists()


def test_deregister_refuses_the_version_serving_a_stage_unless_forced(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.1.0", "prod", repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "deregister", "v1.1.0")
    assert code == 1 and "holds prod" in err and "--force" in err
    assert tags(repo) == before and registry.read(repo).stages == {"prod": "v1.1.0"}

    code, out, _ = modelops(repo, capsys, "deregister", "v1.1.0", "--force")
    assert code == 0 and "prod now without a model" in out
    assert registry.read(repo).stages == {}
    assert_agrees_with_gto(repo)
    # The stage is empty, not silently handed back to a version the user never chose again.
    code, _, err = modelops(repo, capsys, "bundle", "prod", "--out", str(repo / "b"))
    assert code == 1 and "prod" in err


@pytest.mark.parametrize(
    ("ref", "stage", "message"),
    [
        ("v9.9.9", "prod", "no version 'v9.9.9'"),
        ("staging", "prod", "no version of churn holds stage 'staging'"),
        ("other@v1.0.0", "prod", "names another model"),
        ("v1.0.0", "pr od", "not a valid stage name"),
        ("v1.0.0", "prod!", "not a valid stage name"),
        ("v1.0.0", "latest", "not a valid stage name"),
    ],
)
def test_promote_bad_input_is_an_error_that_writes_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str], ref: str, stage: str, message: str
) -> None:
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "promote", ref, "--stage", stage)
    assert code == 1 and message in err
    assert tags(repo) == before


def test_promote_is_all_or_nothing_when_a_tag_name_is_taken(repo: Path) -> None:
    registry.promote("v1.0.0", "prod", repo)
    # The name the next assignment would get is taken (a lightweight tag: no registry event, but
    # the ref exists), as when another writer races us: neither of our two tags may appear.
    run("git", "tag", "churn#prod#3", "HEAD", cwd=repo)
    before = tags(repo)
    with pytest.raises(RegistryError, match=r"churn#prod#3 already exists"):
        registry.promote("v1.1.0", "prod", repo)
    assert tags(repo) == before
    # The transaction itself refuses as a whole, even past the pre-check.
    reg = registry.read(repo)
    with pytest.raises(RegistryError, match="no tag was written"):
        git.write_tags(
            repo,
            [("churn#prod!#4", head(repo), "first"), ("churn#prod#3", head(repo), "taken")],
            after=reg.newest_time,
        )
    assert tags(repo) == before


# --------------------------------------------------------------------------- show / diff


def test_show_a_stage_gives_the_lineage_of_its_version(
    repo: Path, template: Template, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.1.0", "prod", repo)
    code, out, _ = modelops(repo, capsys, "show", "prod", "--json")
    assert code == 0
    shown = json.loads(out)
    at = template.second
    assert shown["version"]["version"] == "v1.1.0" and shown["version"]["commit"] == at
    assert shown["card"] == json.loads(
        run("git", "show", f"{at}:models/card.json", cwd=repo).stdout
    )
    assert shown["metrics"] == json.loads(
        run("git", "show", f"{at}:metrics/metrics.json", cwd=repo).stdout
    )
    assert shown["params"]["train"]["hist_gradient_boosting"]["max_iter"] == 120
    assert shown["lock"]["train"]["outs"]["models/model.joblib"] == lock_md5(repo, at)
    assert (
        shown["card"]["data"]["raw"]["md5"]
        == shown["lock"]["prepare"]["deps"]["data/raw/customers.parquet"]
    )
    assert [e["tag"] for e in shown["history"]] == ["churn@v1.1.0", "churn#prod#1"]

    code, text, _ = modelops(repo, capsys, "show", "prod")
    assert code == 0
    for fact in (at, shown["card"]["artifact"]["sha256"], "train.hist_gradient_boosting.max_iter"):
        assert fact in text


def test_diff_puts_metrics_params_and_data_side_by_side(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = registry.diff("v1.0.0", "v1.1.0", repo)
    assert [(r.key, r.a, r.b) for r in d.params] == [
        ("train.hist_gradient_boosting.max_iter", 250, 120)
    ]
    assert {r.key for r in d.metrics} >= {"roc_auc", "log_loss", "accuracy"}
    rows = {r.key: r for r in d.data}
    assert rows["data.raw"].a == rows["data.raw"].b  # same data, different model
    assert rows["artifact.sha256"].a != rows["artifact.sha256"].b

    code, text, _ = modelops(repo, capsys, "diff", "v1.0.0", "v1.1.0")
    assert code == 0 and "1 differ" in text and "max_iter" in text and "roc_auc" in text


def test_a_version_whose_card_is_of_an_older_format_is_listed_and_shown_with_the_reason(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A card as an older modelops wrote it, before cards carried a reference sample.
    card = json.loads((repo / "models" / "card.json").read_text())
    del card["reference"]
    (repo / "models" / "card.json").write_text(json.dumps(card, indent=2))
    run("git", "commit", "-q", "-am", "a card in an older format", cwd=repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1 and "models/card.json at HEAD is not a model card" in err
    assert "reference" in err and tags(repo) == before
    # Registered when that format was current.
    run("git", "tag", "-a", "churn@v1.2.0", "-m", "registered by an older modelops", cwd=repo)

    code, text, _ = modelops(repo, capsys, "list")
    assert code == 0
    row = next(line for line in text.splitlines() if line.startswith("v1.2.0"))
    assert "card unreadable" in row
    assert "v1.2.0: card unreadable: Object missing required field `reference`" in text
    assert "hist_gradient_boosting" in next(
        line for line in text.splitlines() if line.startswith("v1.1.0")
    )
    listed = json.loads(modelops(repo, capsys, "list", "--json")[1])
    old, previous = listed["versions"][0], listed["versions"][1]
    assert old["version"]["version"] == "v1.2.0" and old["estimator"] is None
    assert "reference" in old["card_unreadable"] and old["metrics"] == previous["metrics"]
    assert "card_unreadable" not in previous  # a readable card adds nothing to the JSON

    code, text, _ = modelops(repo, capsys, "show", "v1.2.0")
    assert code == 0 and "(card unreadable: Object missing required field `reference`)" in text
    assert "roc_auc" in text and "train.hist_gradient_boosting.max_iter" in text
    shown = json.loads(modelops(repo, capsys, "show", "v1.2.0", "--json")[1])
    assert shown["card"] is None and "reference" in shown["card_unreadable"]

    code, text, _ = modelops(repo, capsys, "diff", "v1.1.0", "v1.2.0")
    assert code == 0 and "churn@v1.2.0: card unreadable" in text

    code, _, err = modelops(repo, capsys, "bundle", "v1.2.0", "--out", str(tmp_path / "b"))
    assert code == 1 and "is not a model card this modelops reads" in err
    assert not (tmp_path / "b").exists()


# -------------------------------------------------------------------------------- bundle


def test_bundle_is_verified_against_the_card_and_the_commits_lock(
    repo: Path,
    template: Template,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.promote("v1.0.0", "prod", repo)
    out = tmp_path / "bundle"
    code, text, _ = modelops(repo, capsys, "bundle", "prod", "--out", str(out))
    assert code == 0 and "verified" in text

    digest = bundle.manifest_sha256(out)
    checked = bundle.verify(out, digest)
    manifest, card = checked.manifest, checked.card
    assert (manifest.name, manifest.version, manifest.commit, manifest.stages) == (
        NAME,
        "v1.0.0",
        template.first,
        ["prod"],
    )
    assert md5(out / "model.joblib") == lock_md5(repo, template.first) == card.artifact.md5
    for name, path in (("card.json", "models/card.json"), ("metrics.json", "metrics/metrics.json")):
        committed = run("git", "show", f"{template.first}:{path}", cwd=repo).stdout
        assert (out / name).read_text() == committed
    assert sorted(p.name for p in out.iterdir()) == sorted([bundle.MANIFEST, *bundle.CONTENTS])
    assert all(os.access(p, os.R_OK) for p in out.iterdir())

    # The loader hashes each file once: the small ones when it verifies the bundle, the model as
    # it reads the bytes it unpickles.
    hashed: list[str] = []
    real_sha256 = files.sha256
    monkeypatch.setattr(files, "sha256", lambda p: hashed.append(Path(p).name) or real_sha256(p))
    verified = bundle.verify(out, digest)
    assert sorted(hashed) == sorted(f for f in bundle.CONTENTS if f != bundle.MODEL)
    data = bundle.read_model(out, verified)
    assert verified.model_sha256 == card.artifact.sha256 == sha256(out / "model.joblib")
    assert hashlib.sha256(data).hexdigest() == card.artifact.sha256

    # A model file modified after bundling is refused by the loader's check.
    with (out / "model.joblib").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="does not match the manifest"):
        bundle.read_model(out, verified)


def test_bundle_rejects_a_tampered_model_in_the_cache_and_writes_nothing(
    repo: Path, template: Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = lock_md5(repo, template.first)
    cached = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    cached.chmod(0o644)
    with cached.open("ab") as f:
        f.write(b"tampered")
    out = tmp_path / "bundle"
    code, _, err = modelops(repo, capsys, "bundle", "v1.0.0", "--out", str(out))
    assert code == 1 and f"records {digest}" in err and "corrupt" in err
    assert not out.exists()


def test_bundle_fetches_from_the_remote_when_the_cache_lacks_the_model(
    repo: Path, template: Template, tmp_path: Path
) -> None:
    # The remote is added after the version was registered, as teams often do: the version's
    # commit does not know it, the working tree does.
    remote = tmp_path / "remote"
    run("dvc", "remote", "add", "-d", "storage", remote, cwd=repo)
    run("git", "commit", "-q", "-am", "add a DVC remote", cwd=repo)
    run("dvc", "push", "-q", cwd=repo)
    digest = lock_md5(repo, template.second)
    (repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).unlink()

    manifest = bundle.materialise("v1.1.0", tmp_path / "bundle", repo)
    assert manifest.version == "v1.1.0"
    assert md5(tmp_path / "bundle" / "model.joblib") == digest


def test_bundle_of_a_model_in_no_cache_or_remote_says_how_to_get_it(
    repo: Path, template: Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = lock_md5(repo, template.first)
    (repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).unlink()
    out = tmp_path / "bundle"
    code, _, err = modelops(repo, capsys, "bundle", "v1.0.0", "--out", str(out))
    assert code == 1 and "not in the local DVC cache" in err and "dvc push" in err
    assert not out.exists()


def test_bundle_refuses_to_replace_a_directory_that_is_not_a_bundle(
    repo: Path, tmp_path: Path
) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "important.txt").write_text("keep me\n")
    with pytest.raises(RegistryError, match="is not a bundle"):
        bundle.materialise("v1.0.0", keep, repo)
    assert (keep / "important.txt").read_text() == "keep me\n"


def test_the_console_script_reports_errors_on_stderr_with_status_1(repo: Path) -> None:
    proc = run("modelops", "registry", "show", "v7.0.0", "--repo", repo, cwd=repo, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: churn has no version 'v7.0.0'")


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every entry under `directory`, hidden ones too: path -> bytes (None for a directory)."""
    return {
        str(p.relative_to(directory)): None if p.is_dir() else p.read_bytes()
        for p in sorted(directory.rglob("*"))
    }


def test_bundle_never_deletes_files_it_did_not_write(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.0.0", "prod", repo)
    deploy = tmp_path / "deploy"
    # A file merely named bundle.json does not make a directory a bundle.
    mine = deploy / "mine"
    (mine / "keep").mkdir(parents=True)
    (mine / "bundle.json").write_text('{"notes": "mine"}\n')
    (mine / "precious.txt").write_text("keep me\n")
    (mine / "keep" / "data.csv").write_text("a,b\n")
    before = tree(deploy)
    code, out, err = modelops(repo, capsys, "bundle", "prod", "--out", str(mine))
    assert code == 1 and out == ""
    assert f"refusing to write the bundle into {mine}" in err and "not a bundle manifest" in err
    assert tree(deploy) == before

    # A real bundle with something of the user's added is not only a bundle any more.
    out_dir = deploy / "bundle"
    assert modelops(repo, capsys, "bundle", "prod", "--out", str(out_dir))[0] == 0
    (out_dir / "notes.txt").write_text("my notes\n")
    before = tree(deploy)
    code, _, err = modelops(repo, capsys, "bundle", "prod", "--out", str(out_dir))
    assert code == 1 and "notes.txt" in err and "not written by `modelops registry bundle`" in err
    assert tree(deploy) == before

    # Its own bundle is replaced as a whole, and nothing beside it is touched (not even a
    # directory named like the one an earlier version used for the swap).
    (out_dir / "notes.txt").unlink()
    (deploy / ".bundle.old").mkdir()
    (deploy / ".bundle.old" / "yours.txt").write_text("yours\n")
    code, text, _ = modelops(repo, capsys, "bundle", "v1.1.0", "--out", str(out_dir))
    assert code == 0 and "bundled churn v1.1.0" in text
    assert bundle.verify(out_dir, bundle.manifest_sha256(out_dir)).manifest.version == "v1.1.0"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([bundle.MANIFEST, *bundle.CONTENTS])
    assert sorted(p.name for p in deploy.iterdir()) == [".bundle.old", "bundle", "mine"]
    assert (deploy / ".bundle.old" / "yours.txt").read_text() == "yours\n"


def test_a_bundle_that_fails_midway_leaves_the_previous_bundle_intact(
    repo: Path, template: Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "deploy" / "bundle"
    assert modelops(repo, capsys, "bundle", "v1.1.0", "--out", str(out_dir))[0] == 0
    before = tree(out_dir.parent)
    digest = lock_md5(repo, template.first)
    (repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).unlink()
    code, _, err = modelops(repo, capsys, "bundle", "v1.0.0", "--out", str(out_dir))
    assert code == 1 and "not in the local DVC cache" in err
    assert tree(out_dir.parent) == before
    assert bundle.verify(out_dir, bundle.manifest_sha256(out_dir)).manifest.version == "v1.1.0"


# ------------------------------------------------------------------------- stage names, pipes


def test_promote_refuses_a_stage_name_differing_from_lower_case(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.0.0", "prod", repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "promote", "v1.1.0", "--stage", "PROD")
    assert code == 1 and "lower case" in err and "'prod'" in err
    assert tags(repo) == before and registry.read(repo).stages == {"prod": "v1.0.0"}


def test_a_repository_gto_gave_prod_and_PROD_stays_readable(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("gto", "assign", NAME, "churn@v1.0.0", "--stage", "PROD", cwd=repo)
    run("gto", "assign", NAME, "churn@v1.1.0", "--stage", "prod", cwd=repo)
    assert registry.read(repo).stages == {"PROD": "v1.0.0", "prod": "v1.1.0"}
    assert_agrees_with_gto(repo)
    code, out, err = modelops(repo, capsys, "list")
    assert code == 0 and "stages: PROD=v1.0.0, prod=v1.1.0" in out
    assert "warning: stages PROD and prod differ only in case" in err
    code, out, _ = modelops(repo, capsys, "bundle", "PROD", "--out", str(tmp_path / "b"))
    assert code == 0 and "bundled churn v1.0.0" in out


def test_a_closed_pipe_ends_a_command_quietly(repo: Path) -> None:
    # Enough versions that `list` writes more than a pipe holds: it is still writing when
    # `head` has read its line and gone.
    for i in range(2, 700):
        run("git", "tag", "-a", "-m", "bulk", f"churn@v1.{i}.0", "HEAD", cwd=repo)
    listing = subprocess.Popen(
        ["modelops", "registry", "list"],
        cwd=repo,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head_proc = subprocess.Popen(
        ["head", "-1"], stdin=listing.stdout, stdout=subprocess.PIPE, env=tool_env()
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()
    first, _ = head_proc.communicate(timeout=120)
    err = listing.stderr.read()
    listing.stderr.close()
    assert listing.wait(timeout=120) == cli.CLOSED_PIPE_STATUS
    assert first.decode().startswith("churn: 700 version(s)")
    assert err == b""


# ------------------------------------------------------------------------- the champion gate


def champions_yaml(repo: Path) -> dict[str, object]:
    return yaml.safe_load((repo / "champions.yaml").read_text())


def dvc_status(repo: Path) -> dict[str, object]:
    return json.loads(run("dvc", "status", "--json", cwd=repo).stdout or "{}")


def test_a_change_of_stage_is_recorded_for_the_compare_stage_which_only_prod_reruns(
    repo: Path, template: Template, capsys: pytest.CaptureFixture[str]
) -> None:
    assert champions_yaml(repo) == {"prod": None} and dvc_status(repo) == {}
    code, out, _ = modelops(repo, capsys, "promote", "v1.1.0", "--stage", "staging")
    assert code == 0 and "champions.yaml rewritten (who holds each stage): commit it" in out
    staging = {"version": "v1.1.0", "commit": template.second, "model_md5": lock_md5(repo, "HEAD")}
    assert champions_yaml(repo) == {"prod": None, "staging": staging}
    assert dvc_status(repo) == {}  # compare judges against prod: nothing to re-run

    code, out, _ = modelops(repo, capsys, "promote", "v1.0.0", "--stage", "prod")
    assert code == 0 and "the compare stage's champion changed; `dvc repro`, then commit" in out
    assert champions_yaml(repo)["prod"] == {
        "version": "v1.0.0",
        "commit": template.first,
        "model_md5": lock_md5(repo, template.first),
    }
    assert "champions.yaml" in json.dumps(dvc_status(repo)["compare"])

    code, out, _ = modelops(repo, capsys, "deregister", "v1.0.0", "--force")
    assert code == 0 and champions_yaml(repo)["prod"] is None


def commit_all(repo: Path, message: str) -> None:
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", message, cwd=repo)


def test_register_refuses_a_comparison_made_against_another_champion(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # prod changes hands outside modelops: champions.yaml does not know.
    run("gto", "assign", NAME, "churn@v1.0.0", "--stage", "prod", cwd=repo)
    edit_file(repo / "params.yaml", "max_iter: 120", "max_iter: 160")
    run("dvc", "repro", "-q", cwd=repo)
    commit_all(repo, "more boosting iterations")
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1 and "judged the candidate against no champion for stage 'prod'" in err
    assert "v1.0.0 holds it now" in err and "modelops registry sync" in err
    assert tags(repo) == before

    code, out, _ = modelops(repo, capsys, "sync")
    assert code == 0 and "champions.yaml: written (prod=v1.0.0)" in out
    assert "champions.yaml: up to date (prod=v1.0.0)" in modelops(repo, capsys, "sync")[1]
    run("dvc", "repro", "-q", cwd=repo)
    commit_all(repo, "compare against prod v1.0.0")
    code, out, err = modelops(repo, capsys, "register")
    assert code == 0, err
    assert "gate: no_worse against v1.0.0 (holding prod) on roc_auc" in out


def test_register_needs_the_comparison_dvc_lock_records(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compare = repo / "metrics" / "compare.json"
    text = compare.read_text()
    compare.write_text(text.replace('"verdict": "no_champion"', '"verdict": "better"'))
    commit_all(repo, "a comparison edited by hand")
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1 and "metrics/compare.json at HEAD is not the one dvc.lock records" in err

    run("git", "rm", "-q", "metrics/compare.json", cwd=repo)
    run("git", "commit", "-q", "-m", "no comparison", cwd=repo)
    code, _, err = modelops(repo, capsys, "register")
    assert code == 1 and "metrics/compare.json at HEAD is not committed" in err


def test_force_needs_a_reason_and_a_refusal_to_override(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("git", "commit", "-q", "--allow-empty", "-m", "docs only", cwd=repo)
    before = tags(repo)
    code, _, err = modelops(repo, capsys, "register", "--force")
    assert code == 1 and "--force and --reason go together" in err
    code, _, err = modelops(repo, capsys, "register", "--force", "--reason", "because")
    assert code == 1 and "lets this candidate in (no_champion); --force is not needed" in err
    assert tags(repo) == before


def test_list_shows_each_verdict_within_100_columns_and_diff_puts_them_side_by_side(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.promote("v1.1.0", "prod", repo)
    registry.promote("v1.0.0", "staging", repo)
    code, text, _ = modelops(repo, capsys, "list")
    assert code == 0 and all(len(line) <= 100 for line in text.splitlines()), text
    assert "GATE" in text and text.count("no_champion") == 2
    code, text, _ = modelops(repo, capsys, "diff", "v1.0.0", "v1.1.0")
    assert code == 0
    gate_rows = text[text.index("\ngate ") :].splitlines()
    assert any(r.split()[:3] == ["verdict", "no_champion", "no_champion"] for r in gate_rows)
    assert any(r.split()[:3] == ["champion", "none", "(prod)"] for r in gate_rows)
