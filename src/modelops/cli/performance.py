"""`modelops performance check`: the performance report the stage wrote in; the report printed and
an exit status for cron and CI out (the same codes as `drift check`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from modelops import paths
from modelops.cli.drift import DRIFT_EXIT as CHECK_FAILED
from modelops.errors import ModelopsError, SchemaError
from modelops.performance.status import SEVERITY, STATUSES


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "performance", help="check production performance against outcomes that arrived"
    )
    actions = group.add_subparsers(dest="performance_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help=f"print the performance report; exit {CHECK_FAILED} when it reaches --fail-on",
        description=(
            "Print the performance report the performance stage wrote (metrics/performance.json): "
            "per model version and time window, the metrics on the predictions whose outcomes "
            "arrived, label coverage, and the change against the version's test metrics. Exit "
            f"status: 0 checked, {CHECK_FAILED} status at or above --fail-on, 1 could not "
            "check, 2 usage error."
        ),
    )
    check.add_argument(
        "--fail-on",
        choices=STATUSES[SEVERITY["degraded"] :],
        help=f"exit {CHECK_FAILED} when the overall status is at least this (for cron and CI)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--report", default=str(paths.PERFORMANCE), help="the report to read (default: %(default)s)"
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    # Imported here: the report module loads numpy and scikit-learn.
    from modelops.performance.report import PerformanceReport, format_report

    try:
        raw = Path(args.report).read_bytes()
    except FileNotFoundError:
        raise ModelopsError(
            f"{args.report}: performance report not found (run `dvc repro performance`)"
        ) from None
    try:
        report = msgspec.json.decode(raw, type=PerformanceReport)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(f"{args.report}: not a performance report: {exc}") from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    failing = args.fail_on and SEVERITY[report.status] >= SEVERITY[args.fail_on]
    return CHECK_FAILED if failing else 0
