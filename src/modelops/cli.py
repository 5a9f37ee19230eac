"""The `modelops` command: argv in, exit status out. Each command group registers its subparser here.

Every ModelopsError becomes its message on stderr and exit status 1; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from modelops import __version__, paths, registry
from modelops.errors import ModelopsError, SchemaError

if TYPE_CHECKING:
    from modelops import drift
    from modelops.serve.config import ServeConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops",
        description="Train reproducibly, version in git tags, serve behind a contract, watch drift.",
    )
    parser.add_argument("--version", action="version", version=f"modelops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_registry_commands(commands)
    _add_drift(commands)
    add_serve_parser(commands)
    return parser


# --- registry ---------------------------------------------------------------------------------
# `modelops registry ...`: the git-tag model registry. Logic lives in modelops.registry; this block
# parses arguments and prints.

_KEY_METRICS = ("roc_auc", "roc_auc_macro", "log_loss", "accuracy", "f1", "f1_macro")
_HISTORY_SHOWN = 10


def add_registry_commands(commands: Any) -> None:
    reg = commands.add_parser(
        "registry",
        help="model versions and stages as git tags (GTO's format)",
        description="Model versions and stages as git tags in GTO's format; "
        "`gto show` and `dvc artifacts get` read the same tags.",
    )
    sub = reg.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--repo", type=Path, default=Path("."), help="repository root (default: current directory)"
    )

    p = sub.add_parser("list", parents=[common], help="every version, its stages and key metrics")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_registry_list)

    p = sub.add_parser("show", parents=[common], help="full lineage of one version")
    p.add_argument("ref", help="version (v1.2.0, churn@v1.2.0, latest) or stage (prod)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_registry_show)

    p = sub.add_parser(
        "register",
        parents=[common],
        help="tag HEAD as a new version (clean, reproduced state only)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--bump",
        choices=registry.BUMPS,
        help="which part to increase (default: major if the model's inputs changed, else minor)",
    )
    group.add_argument("--version", dest="new_version", help="exact version, e.g. v2.0.0")
    p.add_argument("-m", "--message", help="annotation of the version tag")
    p.set_defaults(handler=_registry_register)

    p = sub.add_parser("promote", parents=[common], help="give a stage to a version")
    p.add_argument("ref", help="version (v1.2.0) or the stage whose holder to promote (staging)")
    p.add_argument("--stage", required=True, help="stage to assign, e.g. prod")
    p.add_argument("-m", "--message", help="annotation of the stage tag")
    p.set_defaults(handler=_registry_promote)

    p = sub.add_parser(
        "rollback", parents=[common], help="give a stage back to the version that held it before"
    )
    p.add_argument("--stage", required=True, help="stage to roll back, e.g. prod")
    p.set_defaults(handler=_registry_rollback)

    p = sub.add_parser(
        "deregister",
        parents=[common],
        help="withdraw a version: history kept, no stage, no bundle (GTO's deregistration)",
    )
    p.add_argument("ref", help="version (v1.2.0)")
    p.add_argument(
        "--force", action="store_true", help="also when it holds a stage (left without a model)"
    )
    p.add_argument("-m", "--message", help="annotation of the deregistration tag")
    p.set_defaults(handler=_registry_deregister)

    p = sub.add_parser("diff", parents=[common], help="metrics, params and data of two versions")
    p.add_argument("a", help="version or stage")
    p.add_argument("b", help="version or stage")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_registry_diff)

    p = sub.add_parser(
        "bundle", parents=[common], help="write a version's verified model bundle to a directory"
    )
    p.add_argument("ref", help="version (v1.2.0) or stage (prod)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory (created or replaced)")
    p.set_defaults(handler=_registry_bundle)


def _json(obj: object) -> None:
    print(msgspec.json.format(msgspec.json.encode(obj)).decode())


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    cells = [[_cell(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return msgspec.json.encode(value).decode()
    return str(value)


def _data_cell(data: dict[str, dict[str, Any]]) -> str:
    raw, train = data.get("raw") or {}, data.get("train") or {}
    if not raw:
        return "-"
    rows = f" ({train['rows']} train rows)" if train.get("rows") is not None else ""
    return f"{str(raw.get('md5'))[:8]}{rows}"


def _event_line(e: registry.Event) -> list[object]:
    what = {
        "register": "registered",
        "deregister": "deregistered",
        "assign": "assigned",
        "unassign": "unassigned",
    }[e.action]
    note = "rollback" if registry.is_rollback(e) else ""
    return [e.date, e.version or e.commit[:8], what, e.stage or "", e.tag, note]


def _registry_list(args: argparse.Namespace) -> int:
    found = registry.listing(args.repo)
    if args.json:
        _json(found)
        return 0
    if not found.versions:
        print(f"{found.name}: no versions yet; register one with `modelops registry register`")
        return 0
    metric_keys = [k for k in _KEY_METRICS if any(k in s.metrics for s in found.versions)][:3]
    rows = [
        [
            s.version.version,
            s.version.date,
            s.version.commit[:8],
            "deregistered" if s.version.deregistered else ", ".join(s.version.stages) or "-",
            *[s.metrics.get(k) for k in metric_keys],
            s.estimator,
            _data_cell(s.data),
        ]
        for s in found.versions
    ]
    headers = ["VERSION", "DATE", "COMMIT", "STAGES", *[k.upper() for k in metric_keys]]
    stages = ", ".join(f"{s}={v}" for s, v in found.stages.items()) or "none assigned"
    print(f"{found.name}: {len(found.versions)} version(s); stages: {stages}\n")
    print(_table([*headers, "ESTIMATOR", "DATA (raw md5)"], rows))
    events = list(reversed(found.events))
    print("\nhistory (newest first):")
    print(
        _table(
            ["DATE", "VERSION", "EVENT", "STAGE", "TAG", ""],
            [_event_line(e) for e in events[:_HISTORY_SHOWN]],
            "  ",
        )
    )
    if len(events) > _HISTORY_SHOWN:
        print(f"  … {len(events) - _HISTORY_SHOWN} earlier events (`--json` lists all)")
    return 0


def _registry_show(args: argparse.Namespace) -> int:
    lin = registry.lineage(args.ref, args.repo)
    if args.json:
        _json(lin)
        return 0
    v, card = lin.version, lin.card or {}
    state = "deregistered" if v.deregistered else f"stages: {', '.join(v.stages) or 'none'}"
    print(f"{v.tag}  ({state})")
    print(f"  commit      {v.commit}")
    print(f"  registered  {v.date} by {v.author}")
    print(f"  message     {v.message}")
    if card:
        art = card.get("artifact") or {}
        print("\nmodel")
        print(f"  estimator   {card.get('estimator')}  seed {card.get('seed')}")
        print(f"  artifact    {paths.MODEL.as_posix()}  sha256 {art.get('sha256')}")
        print(f"              md5 {art.get('md5')}  {art.get('bytes')} bytes")
        libs = ", ".join(f"{k} {val}" for k, val in (card.get("libraries") or {}).items())
        print(f"  libraries   {libs}")
        data = card.get("data") or {}
        print("\ndata")
        print(
            _table(
                ["NAME", "PATH", "MD5", "ROWS"],
                [[k, d.get("path"), d.get("md5"), d.get("rows")] for k, d in data.items()],
                "  ",
            )
        )
    else:
        print("\n(no model card in this commit)")
    print("\nmetrics")
    print(_table(["METRIC", "VALUE"], list((lin.metrics or {}).items()), "  "))
    print(f"\nparams (params.yaml at {v.commit[:8]})")
    print(_table(["KEY", "VALUE"], list(registry.flatten(lin.params or {}).items()), "  "))
    print("\ndvc.lock")
    lock_rows = [
        [stage, kind, path, md5]
        for stage, body in lin.lock.items()
        for kind in ("outs", "deps")
        for path, md5 in body[kind].items()
    ]
    print(_table(["STAGE", "KIND", "PATH", "MD5"], lock_rows, "  "))
    print("\nhistory")
    print(
        _table(
            ["DATE", "VERSION", "EVENT", "STAGE", "TAG", ""],
            [_event_line(e) for e in lin.history],
            "  ",
        )
    )
    return 0


def _registry_register(args: argparse.Namespace) -> int:
    v = registry.register(args.repo, bump=args.bump, version=args.new_version, message=args.message)
    print(f"registered {v.tag} at commit {v.commit[:8]}")
    print(f"  next: modelops registry promote {v.version} --stage <stage>")
    print(f"  share: git push origin {v.tag}")
    return 0


def _print_transition(t: registry.Transition, verb: str) -> None:
    was = f" (was {t.previous})" if t.previous else ""
    print(f"{verb}: {t.name} {t.version} now holds {t.stage}{was}")
    print(f"  tags: {', '.join(t.tags)}")
    print(f"  share: git push origin {' '.join(t.tags)}")


def _registry_promote(args: argparse.Namespace) -> int:
    _print_transition(registry.promote(args.ref, args.stage, args.repo, args.message), "promoted")
    return 0


def _registry_rollback(args: argparse.Namespace) -> int:
    _print_transition(registry.rollback(args.stage, args.repo), "rolled back")
    return 0


def _registry_deregister(args: argparse.Namespace) -> int:
    d = registry.deregister(args.ref, args.repo, force=args.force, message=args.message)
    released = f"; {', '.join(d.released)} now without a model" if d.released else ""
    print(f"deregistered {d.name}@{d.version}{released}")
    print(f"  tag: {d.tag}")
    print(f"  share: git push origin {d.tag}")
    return 0


def _delta(a: object, b: object) -> object:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        d = b - a
        return f"{d:+.6g}" if isinstance(d, float) else f"{d:+d}"
    return "" if a == b else "changed"


def _registry_diff(args: argparse.Namespace) -> int:
    d = registry.diff(args.a, args.b, args.repo)
    if args.json:
        _json(d)
        return 0
    print("metrics")
    print(
        _table(
            ["METRIC", d.a, d.b, "CHANGE"],
            [[r.key, r.a, r.b, _delta(r.a, r.b)] for r in d.metrics],
            "  ",
        )
    )
    print(f"\nparams ({len(d.params)} differ, {d.same_params} equal)")
    if d.params:
        print(_table(["KEY", d.a, d.b], [[r.key, r.a, r.b] for r in d.params], "  "))
    print("\ndata and artifact")
    print(
        _table(
            ["WHAT", d.a, d.b, ""],
            [[r.key, r.a, r.b, "" if r.a == r.b else "changed"] for r in d.data],
            "  ",
        )
    )
    return 0


def _registry_bundle(args: argparse.Namespace) -> int:
    m = registry.materialise(args.ref, args.out, args.repo)
    stages = f", stages: {', '.join(m.stages)}" if m.stages else ""
    print(f"bundled {m.name} {m.version} (commit {m.commit[:8]}{stages}) into {args.out}")
    print("  model.joblib verified: sha256 matches the card, md5 matches the commit's dvc.lock")
    for name, digest in m.files.items():
        print(f"  {name:<13} sha256 {digest}")
    return 0


# --- end registry -------------------------------------------------------------------------------


# --------------------------------------------------------------------------- drift

DRIFT_EXIT = 3  # `drift check --fail-on`: drift at or above the level (1 stays "could not check")


def _add_drift(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("drift", help="check incoming data against the model's profile")
    actions = group.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="print the drift report; exit 3 when drift reaches --fail-on",
        description=(
            "Print the drift report the drift stage wrote (metrics/drift.json), or with "
            "--incoming judge a file or directory directly against a profile. Thresholds come "
            "from ./params.yaml when present, else the defaults. Exit status: 0 checked, "
            f"{DRIFT_EXIT} drift at or above --fail-on, 1 could not check, 2 usage error."
        ),
    )
    check.add_argument(
        "--fail-on",
        choices=["moderate", "significant"],
        help="exit 3 when the overall status is at least this (for cron and CI)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--report", default=str(paths.DRIFT), help="the report to read (default: %(default)s)"
    )
    check.add_argument(
        "--incoming",
        metavar="PATH",
        help="judge this file or directory (parquet, CSV, prediction-log segments) directly; "
        "prediction drift then comes from logged probabilities only",
    )
    check.add_argument(
        "--profile",
        default=str(paths.PROFILE),
        help="the reference profile for --incoming (default: %(default)s)",
    )
    check.set_defaults(handler=_drift_check)


def _read(path: str, what: str, hint: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelopsError(f"{path}: {what} not found ({hint})") from None


def _drift_check(args: argparse.Namespace) -> int:
    # Imported here: numpy, pandas and pyarrow would slow every other command's start.
    from modelops import drift, incoming, params

    if args.incoming:
        profile = drift.Profile.decode(
            _read(args.profile, "profile", "run `dvc repro profile`, or pass --profile"),
            args.profile,
        )
        has_params = params.PARAMS_FILE.is_file()
        thresholds = (
            drift.Thresholds.from_params(params.load().drift) if has_params else drift.Thresholds()
        )
        counts, source = incoming.tally(args.incoming, profile)
        report = counts.report(thresholds).with_source(source)
    else:
        raw = _read(args.report, "drift report", "run `dvc repro drift`, or pass --incoming")
        try:
            report = msgspec.json.decode(raw, type=drift.DriftReport)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SchemaError(f"{args.report}: not a drift report: {exc}") from None
        _warn_if_stale(report)
    print(json.dumps(report.to_dict(), indent=2) if args.json else drift.format_report(report))
    failing = args.fail_on and drift.SEVERITY[report.status] >= drift.SEVERITY[args.fail_on]
    return DRIFT_EXIT if failing else 0


def _warn_if_stale(report: drift.DriftReport) -> None:
    """A report judged against another model than the current profile's is worth a word."""
    from modelops import drift

    if not paths.PROFILE.is_file() or report.model.sha256 is None:
        return
    current = drift.Profile.decode(paths.PROFILE.read_bytes(), str(paths.PROFILE)).model_sha256
    if current is not None and current != report.model.sha256:
        print(
            f"warning: the report judged model {report.model.sha256[:12]}, but {paths.PROFILE} "
            f"is of {current[:12]}; run `dvc repro drift` for a current report",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- serve
# `modelops serve`: one verified model bundle behind the HTTP contract (src/modelops/serve/).
# Server modules are imported when the command runs, so other commands start without them.


def add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from modelops.serve.config import FIELDS, HELP, ServeConfig, env_name, option_name

    p = commands.add_parser(
        "serve",
        help="serve a model bundle over HTTP",
        description="Serve one model bundle: POST /v1/predict, GET /v1/model, /health/live, "
        "/health/ready, /metrics, OpenAPI at /schema. Every option defaults to its "
        "environment variable, then to the value shown.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, metavar="DIR", help="a bundle directory")
    source.add_argument(
        "--ref", metavar="REF", help="a registry ref (e.g. prod, churn@v1.2.0), bundled first"
    )
    p.add_argument(
        "--bundle-dir",
        type=Path,
        metavar="DIR",
        help="with --ref: where to write the bundle (default: a temporary directory, removed on exit)",
    )
    defaults = ServeConfig()
    for name in FIELDS:
        default = getattr(defaults, name)
        shown = "from the bundle" if default is None else default
        text = f"{HELP[name]} (env {env_name(name)}, default {shown})"
        if isinstance(default, bool):
            p.add_argument(
                option_name(name), action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            # A field whose default is None (taken from the bundle) holds an int when given.
            kind = int if default is None else type(default)
            p.add_argument(option_name(name), type=kind, default=None, help=text)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from modelops.serve.config import FIELDS, ConfigInvalid, build

    try:
        config = build({name: getattr(args, name) for name in FIELDS}, os.environ)
    except ConfigInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scratch: Path | None = None
    try:
        bundle_dir = args.bundle
        if args.ref is not None:
            bundle_dir = args.bundle_dir
            if bundle_dir is None:
                scratch = Path(tempfile.mkdtemp(prefix="modelops-bundle-"))
                bundle_dir = scratch / "bundle"
            registry.materialise(args.ref, bundle_dir)
        _run_server(bundle_dir, config)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _run_server(bundle_dir: Path, config: ServeConfig) -> None:
    from modelops.serve import logs, runner
    from modelops.serve.app import create_app

    logs.configure(config.log_level)
    runner.serve(create_app(bundle_dir, config), config)


# --------------------------------------------------------------------------- end serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
