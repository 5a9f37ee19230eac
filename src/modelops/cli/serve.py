"""`modelops serve`: options, environment and a bundle (or a registry ref) in, with any shadow and
canary models; the verified models behind the HTTP contract (src/modelops/serve/) out.

Server modules are imported when the command runs, so other commands start without them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelops.serve.config import ServeConfig


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from modelops.serve.config import (
        FIELDS,
        HELP,
        METAVAR,
        ServeConfig,
        env_name,
        option_name,
        option_type,
        repeatable,
    )

    p = commands.add_parser(
        "serve",
        help="serve a model bundle over HTTP",
        description="Serve a model bundle (and any shadow or canary models beside it): POST "
        "/v1/predict, the Open Inference Protocol under /v2, GET /v1/model, /health/live, "
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
        if repeatable(name) or name == "admin_token":
            shown = "none"
        text = f"{HELP[name]} (env {env_name(name)}, default {shown})"
        kind = option_type(name)
        if repeatable(name):
            p.add_argument(
                option_name(name), action="append", metavar=METAVAR[name], default=None, help=text
            )
        elif kind is bool:
            p.add_argument(
                option_name(name), action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            p.add_argument(option_name(name), type=kind, default=None, help=text)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from modelops.registry.bundle import materialise
    from modelops.serve.config import FIELDS, ConfigInvalid, build

    try:
        config = build({name: getattr(args, name) for name in FIELDS}, os.environ)
    except ConfigInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="modelops-bundle-"))
    try:
        bundle_dir = args.bundle
        if args.ref is not None:
            bundle_dir = args.bundle_dir or scratch / "bundle"
            materialise(args.ref, bundle_dir)
            config = _trust_the_registry(config, bundle_dir)
        config = _resolve_others(config, scratch / "others")
        return _run_server(bundle_dir, config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _resolve_others(config: ServeConfig, scratch: Path) -> ServeConfig:
    """Shadows and canaries as bundle directories with their digests: a registry ref is bundled
    and vouched for by the registry, like --ref."""
    import msgspec

    from modelops.serve import sources

    shadow = tuple(str(sources.resolve(sources.parse(t), scratch)) for t in config.shadow)
    canary = []
    for text in config.canary:
        source, percent = sources.parse_canary(text)
        canary.append(sources.canary_text(sources.resolve(source, scratch), percent))
    return msgspec.structs.replace(config, shadow=shadow, canary=tuple(canary))


def _trust_the_registry(config: ServeConfig, bundle_dir: Path) -> ServeConfig:
    """With --ref, the registry vouches for the bundle it just wrote: the tagged commit's dvc.lock
    and card checked every file, so its manifest's digest is the root of trust."""
    import msgspec

    from modelops.errors import ArtifactIntegrityError
    from modelops.registry.bundle import manifest_sha256

    digest = manifest_sha256(bundle_dir)
    if config.bundle_sha256 not in (None, digest):
        raise ArtifactIntegrityError(
            f"--bundle-sha256 {config.bundle_sha256[:16]}… is not the registry's bundle of "
            f"this ref ({digest[:16]}…); pass one or the other"
        )
    return msgspec.structs.replace(config, bundle_sha256=digest)


def _run_server(bundle_dir: Path, config: ServeConfig) -> int:
    from modelops.serve import logs, runner
    from modelops.serve.app import create_app

    logs.configure(config.log_level)
    if config.workers > 1:
        return runner.serve_workers(bundle_dir, config)
    return runner.serve(create_app(bundle_dir, config), config)
