"""The `modelops` command: argv in, exit status out. Each command group is a module here that adds
its subparser (`add_parser`) and handles its own arguments; the logic lives in the library.

Every ModelopsError becomes its message on stderr and exit status 1; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelops import __version__
from modelops.cli import drift, performance, registry, serve
from modelops.errors import ModelopsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops",
        description="Train reproducibly, version in git tags, serve behind a contract, watch drift.",
    )
    parser.add_argument("--version", action="version", version=f"modelops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (registry, drift, performance, serve):
        group.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
