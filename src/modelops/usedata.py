"""A table the user brought, its target column and a model name in; the repository switched to
that table in one consistent step out, with what was inferred from it.

`use_data` checks everything before it changes anything: the file reads, the columns validate as
`prepare` will validate them, a binary target of text labels has its positive class named, and
the edits of params.yaml, dvc.yaml and dvc.lock load back to exactly what was meant. Then it lets
DVC track the file (`dvc add`, unless a .dvc file from `dvc add` or `dvc import-url` already
does), writes the three files, and removes the outputs of the bundled data's stage (`generate`),
which leaves the graph: only files equal to what that stage wrote, as dvc.lock records them.

The drift stage then judges the user's held-out test split (data/prepared/test.parquet): rows
the model never trained on, drawn from the same table, so a sound pipeline reads "stable" there
until `drift.incoming` points at production rows (the server's log, data/incoming).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import yaml

from modelops import dataset, files, paths, yamledit
from modelops.errors import ModelopsError
from modelops.evaluation import counterpart
from modelops.params import BaseParams, Params, parse
from modelops.schema import FeatureSchema, binary_positive, infer_and_validate, target_classes

DVC_YAML, DVC_LOCK, PARAMS_FILE = paths.DVC_YAML, paths.DVC_LOCK, paths.PARAMS_FILE
BUNDLED_STAGE = "generate"  # the synthetic data's stage; a user's table takes its place
# The demo of production performance: a log and outcomes simulated from the bundled data, which
# mean nothing for a user's table. `simulate` goes with `generate`; `performance` stays in dvc.yaml
# as comments, to put back once the user's own predictions and outcomes exist.
DEMO_STAGES = (BUNDLED_STAGE, "simulate")
DORMANT_STAGE = "performance"
DORMANT_NOTE = (
    "performance: put back (uncomment) once your predictions (e.g. data/incoming) and outcomes "
    "exist; point params performance.predictions and performance.outcomes at them"
)
INCOMING = paths.TEST  # what drift judges until production rows arrive (see the docstring)

_ID_NAME = re.compile(r"(^|[^a-z0-9])(id|uuid|guid|key)$|^(id|uuid|guid)([^a-z0-9]|$)")


@dataclass
class Switched:
    """What `use_data` inferred and did, for the command to print."""

    path: str
    rows: int
    columns: list[str]
    name: str
    schema: FeatureSchema
    drops: dict[str, str]  # column -> why it is not a feature
    tracked_by: str  # the .dvc file (or stage) that tracks the table
    added: bool  # whether `dvc add` ran
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # bundled outputs left: not what the stage wrote


def id_reason(col: pd.Series) -> str | None:
    """Why a column looks like an identifier (never a feature), or None. Only columns whose every
    value is distinct qualify: text, numbers named like ids, or a run of consecutive integers."""
    values = col.dropna()
    if len(values) < 2 or values.nunique() < len(values) or pd.api.types.is_bool_dtype(col):
        return None
    if not pd.api.types.is_numeric_dtype(values.dtype):
        return "every value is distinct (an identifier or free text)"
    if (values % 1 != 0).any():
        return None
    name = str(col.name)
    if _ID_NAME.search(name.lower()) or re.search(r"[a-z0-9]I[Dd]$", name):
        return "named like an identifier, every value distinct"
    if values.max() - values.min() == len(values) - 1:
        return "consecutive whole numbers, every value distinct (a row number)"
    return None


def use_data(
    path: str,
    target: str,
    name: str,
    positive: str | None = None,
    drop: Sequence[str] = (),
    na_values: Sequence[str] = (),
) -> Switched:
    """Switch the repository in the working directory to the table at `path` (see the module).
    `na_values` are field texts that mean missing in a CSV, besides the empty field."""
    params = _params(name)
    table = _relative(path)
    pipeline = yaml.safe_load(DVC_YAML.read_text()) or {}
    bundled = _bundled_outputs(pipeline)
    if any(table == out or out in table.parents for out in bundled):
        raise ModelopsError(
            f"{table}: written by the bundled data's stage `{BUNDLED_STAGE}`; put your table "
            "elsewhere, e.g. data/raw/<name>.csv"
        )
    tracked_by, add = _tracking(table, pipeline)
    missing = list(dict.fromkeys(["", *na_values])) if na_values else params.data.na_values
    raw = dataset.read_table(table, na_values=missing)
    raw.columns = [str(c) for c in raw.columns]
    drops = _drops(raw, target, drop)
    data = msgspec.structs.replace(
        params.data,
        path=table.as_posix(),
        target=target,
        positive_class=_positive(raw[target], target, positive),
        drop=list(drops),
        na_values=missing,
        features={},
    )
    schema, _ = infer_and_validate(raw, data, table.as_posix())
    wanted = msgspec.structs.replace(
        params,
        base=msgspec.structs.replace(params.base, model_name=name),
        data=data,
        drift=msgspec.structs.replace(params.drift, incoming=INCOMING.as_posix()),
        gate=msgspec.structs.replace(
            params.gate, metric=counterpart(params.gate.metric, schema.target.is_binary)
        ),
    )
    edits = {
        PARAMS_FILE: _params_text(wanted, schema),
        DVC_YAML: _pipeline_text(pipeline, params.base.model_name, name, target, table),
    }
    recorded = _recorded_hashes()
    if DVC_LOCK.is_file():
        edits[DVC_LOCK] = _lock_text()
    if add:
        _dvc("add", table.as_posix())
    for file, text in edits.items():
        files.write_bytes(file, text.encode())
    switched = Switched(
        table.as_posix(), len(raw), list(raw.columns), name, schema, drops, tracked_by, add
    )
    _remove_bundled(bundled, recorded, switched)
    return switched


def _params(name: str) -> Params:
    """The repository's params, once it is a repository and `name` is a registry name."""
    for required in (PARAMS_FILE, DVC_YAML):
        if not required.is_file():
            raise ModelopsError(f"{required}: not found (run from the repository's root)")
    try:
        msgspec.convert({"model_name": name}, BaseParams)
    except msgspec.ValidationError as exc:
        raise ModelopsError(f"--name {name!r}: {exc} (it names the registry's git tags)") from None
    return parse(PARAMS_FILE.read_bytes())


def _relative(path: str) -> Path:
    given = Path(path)
    root = Path.cwd().resolve()
    resolved = (root / given).resolve()
    if not resolved.is_relative_to(root):
        raise ModelopsError(
            f"{path}: outside the repository; copy it in (e.g. to data/raw/) or fetch it with "
            "`dvc import-url`"
        )
    table = resolved.relative_to(root)
    if table.suffix.lower() not in dataset.READERS:
        raise ModelopsError(f"{path}: not a CSV or parquet file")
    if not resolved.is_file():
        raise ModelopsError(f"{path}: file not found")
    return table


def _bundled_outputs(pipeline: dict[str, Any]) -> list[Path]:
    """What the demo stages and the dormant one wrote: each a DVC output (`outs`, `metrics`)."""
    stages = pipeline.get("stages") or {}
    found = []
    for name in (*DEMO_STAGES, DORMANT_STAGE):
        stage = stages.get(name) or {}
        for o in [*stage.get("outs", []), *stage.get("metrics", [])]:
            found.append(Path(next(iter(o)) if isinstance(o, dict) else o))
    return found


def _tracking(table: Path, pipeline: dict[str, Any]) -> tuple[str, bool]:
    """Which DVC file already tracks the table, else that `dvc add` must; git must not."""
    dvc_file = table.with_name(table.name + ".dvc")
    if dvc_file.is_file():
        return dvc_file.as_posix(), False
    for stage_name, stage in (pipeline.get("stages") or {}).items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        if table.as_posix() in outs:
            return f"stage {stage_name!r} of {DVC_YAML}", False
    listed = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "--", table.as_posix()],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        raise ModelopsError(
            f"{table}: committed to git; let DVC track data instead: "
            f"`git rm --cached {table}`, then run this again"
        )
    return dvc_file.as_posix(), True


def _drops(raw: pd.DataFrame, target: str, drop: Sequence[str]) -> dict[str, str]:
    if target not in raw.columns:
        present = ", ".join(map(repr, raw.columns[:20]))
        raise ModelopsError(f"--target {target!r}: not a column of the table ({present})")
    unknown = [c for c in drop if c not in raw.columns]
    if unknown:
        raise ModelopsError(f"--drop {', '.join(map(repr, unknown))}: not a column of the table")
    if target in drop:
        raise ModelopsError(f"--drop {target!r}: that is the target")
    reasons = {c: "--drop" for c in drop}
    for column in raw.columns:
        reason = None if column == target or column in reasons else id_reason(raw[column])
        if reason:
            reasons[column] = reason
    return {c: reasons[c] for c in raw.columns if c in reasons}  # in the table's order


def _positive(col: pd.Series, target: str, positive: str | None) -> str | None:
    classes = target_classes(col.dropna()) or []
    if len(classes) == 2:
        chosen, problem = binary_positive(classes, positive, "--positive")
        if problem:
            raise ModelopsError(f"column '{target}': {problem}")
        return None if positive is None else str(chosen)
    if positive is not None and len(classes) > 2:
        shown = ", ".join(map(str, classes[:10]))
        raise ModelopsError(
            f"--positive: only for a binary target; '{target}' has {len(classes)} classes "
            f"({shown}), each scored one-vs-rest"
        )
    return positive


def _params_text(wanted: Params, schema: FeatureSchema) -> str:
    text = PARAMS_FILE.read_text()
    data, name = wanted.data, wanted.base.model_name
    kind = "binary" if schema.target.is_binary else f"{len(schema.target.classes)} classes"
    for key, value, comment in (
        (("base", "model_name"), name, f"the registry name: tags are {name}@vX.Y.Z"),
        (("data", "path"), data.path, "set by `modelops use-data` (DVC tracks it)"),
        (("data", "target"), data.target, f"{kind}: {_classes(schema)}"),
        (
            ("data", "positive_class"),
            data.positive_class,
            "binary targets: the scored class (numbers: the larger; text labels: name it)",
        ),
        (("data", "drop"), data.drop, "identifiers and leaky columns, never features"),
        (
            ("data", "na_values"),
            data.na_values,
            'CSV only: the exact field texts meaning "missing"',
        ),
        (
            ("data", "features"),
            {},
            "declare what you know; the rest is inferred (see data/prepared/schema.yaml)",
        ),
        (
            ("drift", "incoming"),
            wanted.drift.incoming,
            "the held-out split, until production rows arrive (e.g. data/incoming)",
        ),
        (("gate", "metric"), wanted.gate.metric, "a metric evaluate writes for this target"),
    ):
        text = yamledit.set_value(text, key, value, comment)
    keys = (
        "base.model_name, data.path/target/positive_class/drop/na_values/features, "
        "drift.incoming, gate.metric"
    )
    yamledit.check(str(PARAMS_FILE), text, parse, wanted, [keys])
    return text


def _classes(schema: FeatureSchema) -> str:
    classes = [str(c) for c in schema.target.classes]
    return ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")


def _pipeline_text(
    pipeline: dict[str, Any], old_name: str, name: str, target: str, table: Path
) -> str:
    """dvc.yaml without the demo stages, the performance stage commented out, and the artifact
    renamed."""
    text = DVC_YAML.read_text()
    expected = yaml.safe_load(yaml.safe_dump(pipeline))
    for stage in DEMO_STAGES:
        text = yamledit.remove(text, ["stages", stage])
        (expected.get("stages") or {}).pop(stage, None)
    text = yamledit.comment_out(text, ["stages", DORMANT_STAGE], DORMANT_NOTE)
    (expected.get("stages") or {}).pop(DORMANT_STAGE, None)
    artifacts = expected.setdefault("artifacts", {})
    desc = (
        f"Classifier of {target} from {table.as_posix()} - the fitted scikit-learn Pipeline "
        "(model.joblib), its card and reference profile"
    )
    if name not in artifacts and old_name in artifacts:
        text = yamledit.rename(text, ["artifacts", old_name], name)
        artifacts[name] = artifacts.pop(old_name)
    if name in artifacts:
        text = yamledit.set_value(text, ["artifacts", name, "desc"], desc)
        artifacts[name]["desc"] = desc
    else:
        entry = {"path": f"{paths.MODELS}/", "type": "model", "desc": desc}
        text = yamledit.set_value(text, ["artifacts", name], entry)
        artifacts[name] = entry
    yamledit.check(str(DVC_YAML), text, yaml.safe_load, expected, ["the artifact, the stages"])
    return text


def _lock_text() -> str:
    edited = DVC_LOCK.read_text()
    expected = yaml.safe_load(edited) or {}
    for stage in (*DEMO_STAGES, DORMANT_STAGE):
        (expected.get("stages") or {}).pop(stage, None)
        edited = yamledit.remove(edited, ["stages", stage])
    yamledit.check(str(DVC_LOCK), edited, yaml.safe_load, expected, ["the demo stages"])
    return edited


def _dvc(*args: str) -> str:
    proc = subprocess.run(["dvc", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip()
        raise ModelopsError(f"`dvc {' '.join(args)}` failed: {said}")
    return proc.stdout


def _remove_bundled(outputs: list[Path], recorded: dict[str, str], switched: Switched) -> None:
    """Delete the bundled stage's outputs that are exactly what it wrote, as dvc.lock recorded
    (`recorded`), with their .gitignore lines; the others stay where they are, named."""
    for out in outputs:
        if not out.exists():
            continue
        if out.is_file() and files.md5(out) == recorded.get(out.as_posix()):
            out.unlink()
        elif out.is_dir() and _same_tree(out, recorded.get(out.as_posix())):
            shutil.rmtree(out)
        else:
            switched.kept.append(out.as_posix())
            continue
        switched.removed.append(out.as_posix())
        _unignore(out)


def _recorded_hashes() -> dict[str, str]:
    """The md5 dvc.lock records for each output of the demo stages: what they wrote last."""
    lock = yaml.safe_load(DVC_LOCK.read_text()) if DVC_LOCK.is_file() else None
    stages = (lock or {}).get("stages") or {}
    return {
        o["path"]: o.get("md5", "")
        for name in (*DEMO_STAGES, DORMANT_STAGE)
        for o in (stages.get(name) or {}).get("outs", [])
    }


def _same_tree(directory: Path, dir_md5: str | None) -> bool:
    """Whether a directory holds exactly the files of DVC's listing `<md5>.dir` in its cache."""
    if not dir_md5 or not dir_md5.endswith(".dir"):
        return False
    listing = Path(_dvc("cache", "dir").strip()) / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    if not listing.is_file():
        return False
    entries = {e["relpath"]: e["md5"] for e in files.read_json(listing)}
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    return present == set(entries) and all(
        files.md5(directory / rel) == md5 for rel, md5 in entries.items()
    )


def _unignore(out: Path) -> None:
    """Drop the line DVC added to the output's .gitignore; an emptied .gitignore goes too."""
    ignore = out.parent / ".gitignore"
    if not ignore.is_file():
        return
    lines = [line for line in ignore.read_text().splitlines() if line != f"/{out.name}"]
    if any(line.strip() for line in lines):
        files.write_bytes(ignore, ("\n".join(lines) + "\n").encode())
    else:
        ignore.unlink()
