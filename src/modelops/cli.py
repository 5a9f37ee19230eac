"""The `modelops` command: argv in, exit status out. Each command group registers its subparser here.

Every ModelopsError becomes its message on stderr and exit status 1; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelops import __version__
from modelops.errors import ModelopsError, RegistryError

if TYPE_CHECKING:
    from modelops.serve.config import ServeConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops",
        description="Train reproducibly, version in git tags, serve behind a contract, watch drift.",
    )
    parser.add_argument("--version", action="version", version=f"modelops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_parser(commands)
    return parser


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
        text = f"{HELP[name]} (env {env_name(name)}, default {default})"
        if isinstance(default, bool):
            p.add_argument(
                option_name(name), action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            p.add_argument(option_name(name), type=type(default), default=None, help=text)
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
            try:
                from modelops.registry import (  # type: ignore[attr-defined,unused-ignore]
                    materialise,
                )
            except ImportError as exc:
                raise RegistryError(f"--ref needs the registry module: {exc}") from None

            bundle_dir = args.bundle_dir
            if bundle_dir is None:
                scratch = Path(tempfile.mkdtemp(prefix="modelops-bundle-"))
                bundle_dir = scratch / "bundle"
            materialise(args.ref, bundle_dir)
        _run_server(bundle_dir, config)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _run_server(bundle_dir: Path, config: ServeConfig) -> None:
    import uvicorn

    from modelops.serve import logs
    from modelops.serve.app import create_app

    logs.configure(config.log_level)
    app = create_app(bundle_dir, config)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_config=None,  # logs.configure made every logger, uvicorn's too, write JSON lines
        access_log=False,  # the app writes its own access lines, with request id and model version
        timeout_graceful_shutdown=config.graceful_timeout,
        lifespan="on",
        server_header=False,
    )


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
