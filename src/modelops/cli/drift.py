"""`modelops drift check` and `drift report`: a drift report (or incoming rows and a profile) in;
the report printed with an exit status for cron and CI, or written as one HTML page, out.

numpy, pandas and pyarrow are imported only when the command runs, so other commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from modelops import paths
from modelops.drift.status import SEVERITY, STATUSES
from modelops.errors import ModelopsError, SchemaError

if TYPE_CHECKING:
    from modelops.drift.profile import Profile
    from modelops.drift.report import DriftReport, Source, Tally


DRIFT_EXIT = 3  # `drift check --fail-on`: drift at or above the level (1 stays "could not check")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("drift", help="check incoming data against the model's profile")
    actions = group.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="print the drift report; exit 3 when drift reaches --fail-on",
        description=(
            f"Print the drift report the drift stage wrote ({paths.DRIFT}), or with "
            "--incoming judge a file or directory directly against a profile. Thresholds come "
            "from ./params.yaml when present, else the defaults. Exit status: 0 checked, "
            f"{DRIFT_EXIT} drift at or above --fail-on, 1 could not check, 2 usage error."
        ),
    )
    check.add_argument(
        "--fail-on",
        choices=STATUSES[SEVERITY["moderate"] :],
        help="exit 3 when the overall status is at least this (for cron and CI)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    _source_arguments(check)
    check.set_defaults(handler=_check)
    report = actions.add_parser(
        "report",
        help="write the drift report as one self-contained HTML page",
        description=(
            "Write the drift report as one HTML page that needs no network: the verdict, a "
            "sortable table of every feature and scored class, and reference vs current "
            f"distributions on the frozen bins. By default the drift stage's report ({paths.DRIFT} "
            f"and {paths.DRIFT_PLOTS}/), which it also renders to {paths.DRIFT_HTML}; with "
            "--incoming, a direct check of a file or directory."
        ),
    )
    report.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    _source_arguments(report)
    report.add_argument(
        "--plots",
        default=str(paths.DRIFT_PLOTS),
        help="the distributions beside --report (default: %(default)s)",
    )
    report.set_defaults(handler=_report)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report", default=str(paths.DRIFT), help="the report to read (default: %(default)s)"
    )
    parser.add_argument(
        "--incoming",
        metavar="PATH",
        help="judge this file or directory (parquet, CSV, prediction-log segments) directly; "
        "prediction drift then comes from logged probabilities only",
    )
    parser.add_argument(
        "--profile",
        default=str(paths.PROFILE),
        help="the reference profile for --incoming (default: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="with --incoming: count in this process, or per file on a dask.distributed cluster "
        "(the same counts; needs `pip install 'modelops[dask]'`) (default: %(default)s)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --incoming: the dask scheduler to count on (e.g. tcp://host:8786; implies "
        "--engine dask); without it, --engine dask starts a local cluster of worker processes",
    )


def _read(path: str, what: str, hint: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelopsError(f"{path}: {what} not found ({hint})") from None


Distributions = dict[str, list[dict[str, Any]]]


def _judge(args: argparse.Namespace) -> tuple[DriftReport, Distributions | None]:
    """The report the stage wrote, or (with --incoming) a fresh check and its distributions."""
    # Imported here: numpy, pandas and pyarrow would slow every other command's start.
    from modelops import params
    from modelops.drift.profile import Profile
    from modelops.drift.report import DriftReport
    from modelops.drift.status import Thresholds

    if args.incoming:
        # The p-values need scipy.special, slower to import than 1M rows are to count; it loads
        # in a second thread while this one reads and counts (mostly outside the GIL).
        scipy = threading.Thread(target=importlib.import_module, args=("scipy.special",))
        scipy.start()
        profile = Profile.decode(
            _read(args.profile, "profile", "run `dvc repro profile`, or pass --profile"),
            args.profile,
        )
        has_params = paths.PARAMS_FILE.is_file()
        thresholds = Thresholds.from_params(params.load().drift) if has_params else Thresholds()
        counts, source = _tally(args, profile)
        scipy.join()
        return counts.report(thresholds).with_source(source), counts.distributions()
    raw = _read(args.report, "drift report", "run `dvc repro drift`, or pass --incoming")
    try:
        report = msgspec.json.decode(raw, type=DriftReport)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(f"{args.report}: not a drift report: {exc}") from None
    _warn_if_stale(report)
    return report, None


def _misused(args: argparse.Namespace) -> bool:
    """A usage error argparse cannot see: the dask options count --incoming rows only."""
    if (args.engine == "dask" or args.scheduler) and not args.incoming:
        print("error: --engine dask and --scheduler count --incoming rows", file=sys.stderr)
        return True
    return False


def _check(args: argparse.Namespace) -> int:
    from modelops.drift.report import format_report

    if _misused(args):
        return 2
    report, _ = _judge(args)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    failing = args.fail_on and SEVERITY[report.status] >= SEVERITY[args.fail_on]
    return DRIFT_EXIT if failing else 0


def _report(args: argparse.Namespace) -> int:
    from modelops import files
    from modelops.drift import html
    from modelops.drift.report import prediction_part

    if _misused(args):
        return 2
    report, distributions = _judge(args)
    if distributions is None:
        plots = Path(args.plots)
        if not plots.is_dir():
            raise ModelopsError(f"{plots}: drift distributions not found (run `dvc repro drift`)")
        names = [*report.features, *(prediction_part(c) for c in report.predictions)]
        found = {n: plots / f"{files.safe_name(n)}.json" for n in names}
        distributions = {n: files.read_json(p) for n, p in found.items() if p.is_file()}
    page = html.render(report, distributions).encode()
    files.write_bytes(args.out, page)
    print(f"{args.out}: {len(page) / 1000:.1f} kB, {report.summary().verdict()}")
    return 0


def _tally(args: argparse.Namespace, profile: Profile) -> tuple[Tally, Source]:
    """The counts of --incoming: in this process, or on a dask cluster; a local path, or object
    storage (s3://, remote://) through the DVC remote's configuration."""
    from modelops.drift import distributed, incoming

    if args.engine == "dask" or args.scheduler:
        return distributed.tally(args.incoming, profile, args.scheduler)
    if distributed.is_remote(args.incoming):
        fs, url = distributed.remote_filesystem(args.incoming)
        return incoming.tally(url, profile, fs=fs)
    return incoming.tally(args.incoming, profile)


def _warn_if_stale(report: DriftReport) -> None:
    """A report judged against another model than the current profile's is worth a word."""
    from modelops.drift.profile import Profile

    if not paths.PROFILE.is_file() or report.model.sha256 is None:
        return
    current = Profile.decode(paths.PROFILE.read_bytes(), str(paths.PROFILE)).model_sha256
    if current is not None and current != report.model.sha256:
        print(
            f"warning: the report judged model {report.model.sha256[:12]}, but {paths.PROFILE} "
            f"is of {current[:12]}; run `dvc repro drift` for a current report",
            file=sys.stderr,
        )
