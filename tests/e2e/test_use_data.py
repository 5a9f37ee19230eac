"""Your own table, by the README alone: its "Bring your own data" block run as written in a copy
of the reproduced repository, on a generated penguins table (three text labels, gaps written NA,
two categorical columns, an integer year), through `dvc repro`, register, bundle, `drift check`
and a prediction from `modelops serve --ref`. And what `use-data` refuses, keeps and accepts."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from modelops import files, paths
from tests.conftest import REPO, copy_repo, run, tool_env
from tests.serve.conftest import READY_TIMEOUT, free_port

ROWS = 2000
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def readme_block(heading: str = "## Bring your own data") -> list[str]:
    """The command lines of the section's shell block, as the README writes them."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", len(heading))]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"README.md: no ```sh block under {heading!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def penguins(n: int, seed: int, species: list[str] = CLASSES) -> pd.DataFrame:
    """A table shaped like the Palmer penguins: species from bill, flipper and mass, islands that
    go with species, a few gaps, an id column and an integer year."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(len(species), n, p=np.full(len(species), 1 / len(species)))
    means = {"bill_length_mm": [38.8, 48.8, 47.5], "bill_depth_mm": [18.3, 18.4, 15.0]}
    means |= {"flipper_length_mm": [190, 196, 217], "body_mass_g": [3700, 3733, 5076]}
    spread = {"bill_length_mm": 2.6, "bill_depth_mm": 1.2, "flipper_length_mm": 6.5}
    index = [CLASSES.index(s) for s in species]
    frame = pd.DataFrame({"penguin_id": [f"P{i:05d}" for i in range(n)]})
    frame["species"] = np.array(species)[kind]
    islands = np.array(["Torgersen", "Dream", "Biscoe"])[np.array(index)[kind]]
    frame["island"] = np.where(rng.random(n) < 0.3, rng.choice(["Biscoe", "Dream"], n), islands)
    for column, per_class in means.items():
        values = np.array(per_class)[np.array(index)[kind]]
        values = values + rng.normal(0, spread.get(column, 450), n)
        frame[column] = values.round(1) if column.startswith("bill") else values.round()
        frame.loc[rng.random(n) < 0.01, column] = np.nan
    frame["sex"] = rng.choice(["male", "female"], n)
    frame.loc[rng.random(n) < 0.03, "sex"] = None
    frame["year"] = rng.choice([2007, 2008, 2009], n)
    for whole in ("flipper_length_mm", "body_mass_g"):
        frame[whole] = frame[whole].astype("Int64")
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, na_rep="NA")
    return path


def instances(repo: Path, table: Path, n: int) -> list[dict[str, Any]]:
    """The table's first rows as a client sends them: the card's features, JSON null for gaps."""
    card = files.read_json(repo / paths.CARD)
    frame = pd.read_csv(table, na_values=["NA"], keep_default_na=False).head(n)
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for f in card["feature_schema"]["features"]:
            v = record[f["name"]]
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            integer = f["kind"] == "numeric" and f["dtype"] == "integer"
            row[f["name"]] = None if missing else int(v) if integer else v
        rows.append(row)
    return rows


def test_the_readme_block_takes_a_table_to_a_served_model_and_a_drift_verdict(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    lines = readme_block()
    assert lines[-1].startswith("modelops serve --ref "), "the block ends by serving the model"
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    home = tmp_path / "home"
    table = write_csv(penguins(ROWS, 7), home / "Downloads" / "penguins.csv")
    before = (repo / "params.yaml").read_text()
    env = tool_env(HOME=str(home))

    out = run("bash", "-c", "set -euo pipefail\n" + "\n".join(lines[:-1]), cwd=repo, env=env)
    said = out.stdout
    assert "target 'species': 3 classes (Adelie, Chinstrap, Gentoo)" in said
    assert "dropped 'penguin_id': every value is distinct" in said
    assert re.search(r"\n  year +numeric, integer\n", said)
    assert re.search(r"\n  sex +categorical, 2 categories, has gaps\n", said)
    assert "removed what the demo stages wrote: data/raw/customers.parquet, " in said

    # The repository now describes the user's model, and only that.
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert not {"generate", "simulate", "performance"} & set(pipeline["stages"])
    assert list(pipeline["artifacts"]) == ["penguins"]
    assert "\n  # performance:\n" in (repo / "dvc.yaml").read_text()  # kept, to put back
    assert not (repo / paths.RAW).exists() and not (repo / paths.SCENARIOS).exists()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    wanted = {
        "path": "data/raw/penguins.csv",
        "target": "species",
        "positive_class": None,
        "drop": ["penguin_id"],
        "na_values": ["", "NA"],
        "features": {},
    }
    assert {key: params["data"][key] for key in wanted} == wanted
    assert params["drift"]["incoming"] == str(paths.TEST)
    assert params["base"]["model_name"] == "penguins"
    after = (repo / "params.yaml").read_text()
    for section in ("preprocess:", "train:", "evaluate:"):  # untouched, comments and all
        start = before.index(f"\n{section}")
        assert before[start : before.index("\n\n", start)] in after
    card = files.read_json(repo / paths.CARD)
    assert card["name"] == "penguins" and card["classes"] == CLASSES
    assert card["data"]["raw"] == {
        "path": "data/raw/penguins.csv",
        "md5": files.md5(repo / "data/raw/penguins.csv"),
        "rows": ROWS,
    }
    assert files.read_json(repo / paths.METRICS)["roc_auc_macro"] > 0.95

    # Committed, registered, bundled: a clean, reproducible state.
    assert run("git", "status", "--porcelain", cwd=repo).stdout == ""
    assert "Data and pipelines are up to date." in run("dvc", "status", cwd=repo).stdout
    (tag,) = run("git", "tag", "-l", "penguins@*", cwd=repo).stdout.split()
    version = tag.split("@")[1]
    manifest = files.read_json(repo / "build" / "bundle" / "bundle.json")
    assert (manifest["name"], manifest["version"]) == ("penguins", version)
    table_out = said[said.index("drift check: ") :]
    assert "drift check: 400 rows of data/prepared/test.parquet against penguins" in table_out
    assert "overall: stable" in table_out
    summary = run("modelops", "summary", cwd=repo).stdout.splitlines()
    assert summary[0].startswith("penguins: hist_gradient_boosting, 7 features")
    assert max(map(len, summary)) <= 100

    # The last line serves the registered model; a client gets one of the classes back.
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        ["bash", "-c", lines[-1]],
        cwd=repo,
        env={**env, "MODELOPS_SERVE_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
            answer = http.post("/v1/predict", json={"instances": instances(repo, table, 5)})
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == version
        for prediction in answer.json()["predictions"]:
            assert prediction["label"] in CLASSES
            assert sorted(prediction["probabilities"]) == CLASSES
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        status = server.wait(timeout=60)
        log.close()
    assert status == 0, (tmp_path / "server.log").read_text()


@pytest.fixture
def repo(reproduced_repo: Path, tmp_path: Path) -> Path:
    return copy_repo(reproduced_repo, tmp_path / "repo")


def use_data(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("modelops", "use-data", *args, cwd=repo, check=check)


def changed(repo: Path) -> str:
    return run("git", "status", "--porcelain", cwd=repo).stdout


def test_two_text_labels_need_a_positive_class_and_nothing_changes_without(repo: Path) -> None:
    write_csv(penguins(600, 3, ["Adelie", "Gentoo"]), repo / "data" / "raw" / "two.csv")
    args = ["data/raw/two.csv", "--target", "species", "--name", "two", "--na-value", "NA"]
    refused = use_data(repo, *args, check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: column 'species': --positive is needed for two text labels ('Adelie' and "
        "'Gentoo'): name the one whose probability is scored\n"
    )
    assert changed(repo) == "?? data/raw/two.csv\n"  # not even `dvc add`
    said = use_data(repo, *args, "--positive", "Gentoo").stdout
    assert "2 classes (Adelie, Gentoo); scores 'Gentoo'" in said
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["positive_class"] == "Gentoo"
    run("dvc", "repro", "prepare", cwd=repo)
    schema = yaml.safe_load((repo / paths.SCHEMA).read_text())
    assert schema["target"] == {
        "name": "species",
        "classes": ["Adelie", "Gentoo"],
        "positive": "Gentoo",
    }


def test_a_table_that_does_not_validate_changes_nothing(repo: Path) -> None:
    write_csv(penguins(600, 3), repo / "data" / "raw" / "p.csv")
    refused = use_data(
        repo, "data/raw/p.csv", "--target", "species", "--name", "pengs", check=False
    )
    assert refused.returncode == 1
    assert "column 'bill_length_mm': " in refused.stderr and "(e.g. 'NA'" in refused.stderr
    assert "--na-value TEXT names a CSV field text that means missing" in refused.stderr
    assert changed(repo) == "?? data/raw/p.csv\n"


def test_an_imported_table_is_taken_as_dvc_tracks_it_and_changed_bundled_files_stay(
    repo: Path, tmp_path: Path
) -> None:
    source = write_csv(penguins(800, 5), tmp_path / "storage" / "penguins.csv")
    run("dvc", "import-url", str(source), "data/raw/penguins.csv", cwd=repo)
    scenario = repo / paths.scenario_path("campaign")
    scenario.write_bytes(scenario.read_bytes() + b"edited by hand")
    said = use_data(
        repo,
        "data/raw/penguins.csv",
        "--target",
        "species",
        "--name",
        "penguins",
        "--na-value",
        "NA",
        "--drop",
        "year",
    ).stdout
    assert "DVC tracks it (already tracked: data/raw/penguins.csv.dvc)" in said
    assert "dropped 'year': --drop" in said
    # generate wrote the table; the scenarios were changed by hand since, so they stay
    removed = next(line for line in said.splitlines() if line.startswith("removed what"))
    assert "data/raw/customers.parquet" in removed and "data/demo/outcomes.csv" in removed
    assert "left in place (changed since the demo stages wrote them): data/scenarios" in said
    assert scenario.is_file() and not (repo / paths.RAW).exists()
    run("dvc", "repro", cwd=repo)
    assert "Data and pipelines are up to date." in run("dvc", "status", cwd=repo).stdout
