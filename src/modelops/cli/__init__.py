"""The `modelops` command: argv in, exit status out. Each command group is a module here that adds
its subparser (`add_parser`) and handles its own arguments; the logic lives in the library.

Every ModelopsError becomes its message on stderr and exit status 1; argparse usage errors exit 2.
Output into a pipe whose reader has gone (`modelops registry list | head -1`) ends the command
quietly with CLOSED_PIPE_STATUS, what a shell reports for a program that SIGPIPE ended.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from modelops import __version__
from modelops.cli import data, drift, performance, registry, serve
from modelops.errors import ModelopsError

CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE: as `git log | head -1` leaves git


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops",
        description="Train reproducibly, version in git tags, serve behind a contract, watch drift.",
    )
    parser.add_argument("--version", action="version", version=f"modelops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, registry, drift, performance, serve):
        group.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # Python ignores SIGPIPE, so a write into a closed pipe raises; only stdout's reader
        # leaving is the user's doing. Anything else that raises it is a fault and is shown.
        if not _stdout_reader_gone():
            raise
        # What is still buffered would fail again at exit, with a message: let it go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE_STATUS


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help and usage errors print, then exit
    finally:
        sys.stdout.flush()
    try:
        code = int(args.handler(args) or 0)
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()  # a closed pipe shows here for what is still buffered, not at exit
    return code


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket nobody reads any more (poll reports an error on it)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (a test's capture)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))
