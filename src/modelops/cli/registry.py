"""`modelops registry ...`: arguments in, the git-tag model registry's answers printed out.

The logic lives in modelops.registry; this module parses arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelops import paths, registry
from modelops.cli.output import print_json, table
from modelops.errors import RegistryError

if TYPE_CHECKING:
    from typing import TypeAlias

    from modelops.card import Card, DataFingerprint

    _Actions: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

_KEY_METRICS = ("roc_auc", "roc_auc_macro", "log_loss", "accuracy", "f1", "f1_macro")
_HISTORY_SHOWN = 10
_UNREADABLE = "card unreadable"


def add_parser(commands: _Actions) -> None:
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

    for add in (
        _add_list,
        _add_show,
        _add_register,
        _add_promote,
        _add_rollback,
        _add_deregister,
        _add_diff,
        _add_bundle,
        _add_sync,
    ):
        add(sub, common)


def _add_list(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("list", parents=[common], help="every version, its stages and key metrics")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_list)


def _add_show(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("show", parents=[common], help="full lineage of one version")
    p.add_argument("ref", help="version (v1.2.0, churn@v1.2.0, latest) or stage (prod)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_show)


def _add_register(sub: _Actions, common: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--force",
        action="store_true",
        help="register although the champion gate says `worse` (needs --reason)",
    )
    p.add_argument("--reason", help="why the gate is overridden; kept in the version tag")
    p.set_defaults(handler=_register)


def _add_promote(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("promote", parents=[common], help="give a stage to a version")
    p.add_argument("ref", help="version (v1.2.0) or the stage whose holder to promote (staging)")
    p.add_argument("--stage", required=True, help="stage to assign, e.g. prod")
    p.add_argument("-m", "--message", help="annotation of the stage tag")
    p.set_defaults(handler=_promote)


def _add_rollback(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "rollback", parents=[common], help="give a stage back to the version that held it before"
    )
    p.add_argument("--stage", required=True, help="stage to roll back, e.g. prod")
    p.set_defaults(handler=_rollback)


def _add_deregister(sub: _Actions, common: argparse.ArgumentParser) -> None:
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
    p.set_defaults(handler=_deregister)


def _add_diff(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("diff", parents=[common], help="metrics, params and data of two versions")
    p.add_argument("a", help="version or stage")
    p.add_argument("b", help="version or stage")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(handler=_diff)


def _add_bundle(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bundle", parents=[common], help="write a version's verified model bundle to a directory"
    )
    p.add_argument("ref", help="version (v1.2.0) or stage (prod)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="bundle directory: new, empty, or an earlier bundle (replaced as a whole)",
    )
    p.set_defaults(handler=_bundle)


def _add_sync(sub: _Actions, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sync",
        parents=[common],
        help=f"write {paths.CHAMPIONS} from the tags (after tags moved outside modelops)",
        description=f"Write {paths.CHAMPIONS}, the compare stage's record of the version holding "
        "each stage, from the registry's tags as they are now: after `git fetch --tags`, "
        "`gto assign` or a promotion made elsewhere.",
    )
    p.set_defaults(handler=_sync)


def _data_cell(data: dict[str, DataFingerprint]) -> str:
    raw = data.get("raw")
    return "-" if raw is None else raw.md5[:8]


def _gate_cell(s: registry.lineage.Summary) -> str:
    """The verdict and the difference in the gate metric (the champion is in `show`)."""
    if s.gate is None:
        return "-"
    delta = "" if s.gate.delta is None else f" {s.gate.delta:+.4f}"
    return f"{s.gate.verdict}{delta}" + (" (forced)" if s.gate_override else "")


def _event_line(e: registry.Event) -> list[object]:
    what = {
        "register": "registered",
        "deregister": "deregistered",
        "assign": "assigned",
        "unassign": "unassigned",
    }[e.action]
    note = "rollback" if registry.is_rollback(e) else ""
    return [e.date, e.version or e.commit[:8], what, e.stage or "", e.tag, note]


def _list(args: argparse.Namespace) -> int:
    found = registry.listing(args.repo)
    if args.json:
        print_json(found)
        return 0
    for names in found.case_clashes:
        print(
            f"warning: stages {' and '.join(names)} differ only in case; another tool wrote them "
            "and they are separate stages (for GTO too). modelops writes lower-case stage names "
            "only: promote to the lower-case one, and release the others with `gto unassign`",
            file=sys.stderr,
        )
    if not found.versions:
        print(f"{found.name}: no versions yet; register one with `modelops registry register`")
        return 0
    # One key metric and no date (the history below has them), so a row fits 100 columns.
    metric_keys = [k for k in _KEY_METRICS if any(k in s.metrics for s in found.versions)][:1]
    rows = [
        [
            s.version.version,
            s.version.commit[:8],
            "deregistered" if s.version.deregistered else ", ".join(s.version.stages) or "-",
            *[s.metrics.get(k) for k in metric_keys],
            _gate_cell(s),
            _UNREADABLE if s.card_unreadable else s.estimator,
            _data_cell(s.data),
        ]
        for s in found.versions
    ]
    headers = ["VERSION", "COMMIT", "STAGES", *[k.upper() for k in metric_keys], "GATE"]
    stages = ", ".join(f"{s}={v}" for s, v in found.stages.items()) or "none assigned"
    print(f"{found.name}: {len(found.versions)} version(s); stages: {stages}\n")
    print(table([*headers, "ESTIMATOR", "RAW DATA"], rows))
    for s in found.versions:
        if s.card_unreadable:
            print(f"  {s.version.version}: {_UNREADABLE}: {s.card_unreadable}")
    events = list(reversed(found.events))
    print("\nhistory (newest first):")
    print(
        table(
            ["DATE", "VERSION", "EVENT", "STAGE", "TAG", ""],
            [_event_line(e) for e in events[:_HISTORY_SHOWN]],
            "  ",
        )
    )
    if len(events) > _HISTORY_SHOWN:
        print(f"  … {len(events) - _HISTORY_SHOWN} earlier events (`--json` lists all)")
    return 0


def _show(args: argparse.Namespace) -> int:
    lin = registry.show(args.ref, args.repo)
    if args.json:
        print_json(lin)
        return 0
    v = lin.version
    state = "deregistered" if v.deregistered else f"stages: {', '.join(v.stages) or 'none'}"
    print(f"{v.tag}  ({state})")
    print(f"  commit      {v.commit}")
    print(f"  registered  {v.date} by {v.author}")
    first, *rest = v.message.splitlines() or [""]
    print(f"  message     {first}")
    for line in rest:
        print(f"              {line}".rstrip())
    if lin.card is not None:
        _print_card(lin.card)
    elif lin.card_unreadable:
        print(f"\n({_UNREADABLE}: {lin.card_unreadable})")
    else:
        print("\n(no model card in this commit)")
    print("\nmetrics")
    print(table(["METRIC", "VALUE"], list((lin.metrics or {}).items()), "  "))
    _print_gate(lin)
    print(f"\nparams ({paths.PARAMS_FILE} at {v.commit[:8]})")
    print(table(["KEY", "VALUE"], list(registry.flatten(lin.params or {}).items()), "  "))
    print(f"\n{paths.DVC_LOCK}")
    lock_rows = [
        [stage, kind, path, md5]
        for stage, body in lin.lock.items()
        for kind in ("outs", "deps")
        for path, md5 in getattr(body, kind).items()
    ]
    print(table(["STAGE", "KIND", "PATH", "MD5"], lock_rows, "  "))
    print("\nhistory")
    print(
        table(
            ["DATE", "VERSION", "EVENT", "STAGE", "TAG", ""],
            [_event_line(e) for e in lin.history],
            "  ",
        )
    )
    return 0


def _print_gate(lin: registry.Lineage) -> None:
    print(f"\ngate ({paths.COMPARE} at {lin.version.commit[:8]})")
    if lin.gate is not None:
        for line in lin.gate.lines():
            print(f"  {line}")
    elif lin.gate_unreadable:
        print(f"  (unreadable: {lin.gate_unreadable})")
    else:
        print("  (none: registered before this repository had the compare stage)")
    if lin.gate_override:
        print(f"  registered although the gate refused it; reason: {lin.gate_override}")


def _print_card(card: Card) -> None:
    art = card.artifact
    print("\nmodel")
    print(f"  estimator   {card.estimator}  seed {card.seed}")
    print(f"  artifact    {paths.MODEL.as_posix()}  sha256 {art.sha256}")
    print(f"              md5 {art.md5}  {art.bytes} bytes")
    print(f"  libraries   {', '.join(f'{k} {val}' for k, val in card.libraries.items())}")
    print("\ndata")
    print(
        table(
            ["NAME", "PATH", "MD5", "ROWS"],
            [[k, d.path, d.md5, d.rows] for k, d in card.data.items()],
            "  ",
        )
    )


def _register(args: argparse.Namespace) -> int:
    if args.force != (args.reason is not None):
        raise RegistryError("--force and --reason go together: say why the gate is overridden")
    v = registry.register(
        args.repo,
        bump=args.bump,
        version=args.new_version,
        message=args.message,
        force_reason=args.reason,
    )
    print(f"registered {v.tag} at commit {v.commit[:8]}")
    gate = registry.show(v.version, args.repo).gate
    if gate is not None:
        print(
            f"  {gate.headline()}" + (" (forced: the reason is in the tag)" if args.force else "")
        )
    print(f"  next: modelops registry promote {v.version} --stage <stage>")
    print(f"  share: git push origin {v.tag}")
    return 0


def _champions_note(path: Path, gated: bool) -> str:
    if gated:
        return f"  {path} rewritten: the compare stage's champion changed; `dvc repro`, then commit"
    return f"  {path} rewritten (who holds each stage): commit it"


def _print_transition(t: registry.Transition, verb: str) -> None:
    was = f" (was {t.previous})" if t.previous else ""
    print(f"{verb}: {t.name} {t.version} now holds {t.stage}{was}")
    print(f"  tags: {', '.join(t.tags)}")
    print(f"  share: git push origin {' '.join(t.tags)}")
    print(_champions_note(t.champions, t.gated))


def _promote(args: argparse.Namespace) -> int:
    _print_transition(registry.promote(args.ref, args.stage, args.repo, args.message), "promoted")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    _print_transition(registry.rollback(args.stage, args.repo), "rolled back")
    return 0


def _deregister(args: argparse.Namespace) -> int:
    d = registry.deregister(args.ref, args.repo, force=args.force, message=args.message)
    released = f"; {', '.join(d.released)} now without a model" if d.released else ""
    print(f"deregistered {d.name}@{d.version}{released}")
    print(f"  tag: {d.tag}")
    print(f"  share: git push origin {d.tag}")
    print(_champions_note(d.champions, d.gated))
    return 0


def _delta(a: object, b: object) -> object:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        d = b - a
        return f"{d:+.6g}" if isinstance(d, float) else f"{d:+d}"
    return "" if a == b else "changed"


def _diff(args: argparse.Namespace) -> int:
    d = registry.diff(args.a, args.b, args.repo)
    if args.json:
        print_json(d)
        return 0
    print("metrics")
    print(
        table(
            ["METRIC", d.a, d.b, "CHANGE"],
            [[r.key, r.a, r.b, _delta(r.a, r.b)] for r in d.metrics],
            "  ",
        )
    )
    print(f"\nparams ({len(d.params)} differ, {d.same_params} equal)")
    if d.params:
        print(table(["KEY", d.a, d.b], [[r.key, r.a, r.b] for r in d.params], "  "))
    print("\ndata and artifact")
    print(
        table(
            ["WHAT", d.a, d.b, ""],
            [[r.key, r.a, r.b, "" if r.a == r.b else "changed"] for r in d.data],
            "  ",
        )
    )
    for tag, reason in d.card_unreadable.items():
        print(f"  {tag}: {_UNREADABLE}: {reason}")
    print("\ngate (each version against the champion it was registered against)")
    print(table(["WHAT", d.a, d.b], [[r.key, r.a, r.b] for r in d.gate], "  "))
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from modelops.registry.bundle import materialise  # loads the card's libraries: only here

    m = materialise(args.ref, args.out, args.repo)
    stages = f", stages: {', '.join(m.stages)}" if m.stages else ""
    print(f"bundled {m.name} {m.version} (commit {m.commit[:8]}{stages}) into {args.out}")
    print("  model.joblib verified: sha256 matches the card, md5 matches the commit's dvc.lock")
    for name, digest in m.files.items():
        print(f"  {name:<13} sha256 {digest}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    synced = registry.sync(args.repo)
    held = ", ".join(
        f"{stage}={ref.version if ref else '-'}" for stage, ref in synced.holders.items()
    )
    if not synced.changed:
        print(f"{synced.path}: up to date ({held})")
        return 0
    print(f"{synced.path}: written ({held})")
    print("  commit it; `dvc repro` re-runs compare if the stage it judges against changed hands")
    return 0
