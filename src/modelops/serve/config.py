"""CLI options and MODELOPS_SERVE_* environment variables in; one validated ServeConfig out.

Every field has an environment variable (`MODELOPS_SERVE_` + the field name in capitals) that sets
its default, and a CLI option (`--` + the field name with dashes) that overrides it; a list field's
option is repeated, its variable separated by commas. An out-of-range value is an error naming the
option or variable it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, cast, get_args, get_origin

import msgspec

from modelops import paths
from modelops.params import window_can_report
from modelops.serve import sources

ENV_PREFIX = "MODELOPS_SERVE_"
MiB = 1 << 20


class ServeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    # Worker processes on one socket (one core each, at most): see serve/workers.py.
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    # The contract: how many instances one request may carry, and how many bytes its body may have.
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * MiB)] = 4 * MiB
    # Micro-batching: concurrent requests already being read are awaited this long at most, so
    # they share one model call; a lone request never waits.
    batch_wait_ms: Annotated[float, msgspec.Meta(ge=0, le=100)] = 2.0
    max_batch_rows: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    # The prediction log the drift stage reads.
    log_dir: str = str(paths.INCOMING)
    log_rotate_rows: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    log_rotate_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 64 * MiB
    log_rotate_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # Seconds between fsyncs of the live segment (what a machine crash can lose); 0: an fsync
    # before every answer.
    log_fsync_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    # Live drift: the last `drift_window` answered rows are compared with the training profile;
    # nothing is reported before `drift_min_rows` (small windows make PSI noise look like drift).
    # Unset, both come from the bundle's profile (params.yaml's drift.window and drift.min_rows).
    # A window of 0 turns live drift off (the serve benchmark measures what it costs this way).
    drift_window: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    drift_min_rows: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # A request body must arrive whole within this; a client that stalls mid-body gets a 408.
    body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    # SIGTERM: how long in-flight requests may take to finish before the server stops anyway.
    graceful_timeout: Annotated[int, msgspec.Meta(ge=1)] = 30
    access_log: bool = True
    # The root of trust for a --bundle: the sha256 of its bundle.json, as `modelops registry
    # bundle` printed it (`make image` bakes it into the image). Nothing is unpickled without it;
    # with --ref the registry supplies it.
    bundle_sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None = None
    log_level: Annotated[str, msgspec.Meta(pattern="^(debug|info|warning|error)$")] = "info"
    # Models beside the primary (serve/sources.py has the grammar): shadows score every request off
    # the response path; each canary answers its share of the traffic.
    shadow: tuple[str, ...] = ()
    canary: tuple[str, ...] = ()
    # Bearer token of the admin routes (PUT /admin/canary); without one they do not exist.
    admin_token: Annotated[str, msgspec.Meta(min_length=16, pattern=r"^\S+$")] | None = None


FIELDS: tuple[str, ...] = ServeConfig.__struct_fields__

HELP: dict[str, str] = {
    "host": "interface to listen on",
    "workers": "worker processes sharing the port (one per core; metrics and drift are summed)",
    "port": "TCP port to listen on",
    "max_instances": "most instances one predict request may carry",
    "max_body_bytes": "largest request body accepted (413 above it)",
    "batch_wait_ms": "longest wait for concurrent requests to share a model call (0: never wait)",
    "max_batch_rows": "most rows per micro-batched model call",
    "log_dir": "directory of the prediction log segments the drift stage reads",
    "log_rotate_rows": "rows per prediction log segment",
    "log_rotate_bytes": "bytes per prediction log segment",
    "log_rotate_seconds": "oldest a prediction log segment may get before it is closed",
    "log_fsync_seconds": "seconds between fsyncs of the prediction log (0: before every answer)",
    "drift_window": "answered rows in the live drift window (0: off; default: the profile's)",
    "drift_min_rows": "rows the live window needs before it reports PSI (default: the profile's)",
    "body_timeout_seconds": "seconds a request body may take to arrive (408 after)",
    "graceful_timeout": "seconds in-flight requests get to finish after SIGTERM",
    "access_log": "write a JSON access line per request",
    "bundle_sha256": "sha256 of the bundle's bundle.json, vouching for every file in it",
    "log_level": "debug, info, warning or error",
    "shadow": "a model scoring every request off the response path: a registry ref, or "
    "DIR@<sha256 of its bundle.json> (repeatable)",
    "canary": "a model answering a share of the traffic: SOURCE:PERCENT%% (repeatable)",
    "admin_token": "bearer token for PUT/GET /admin/canary (at least 16 characters; prefer the "
    "environment variable)",
}

METAVAR: dict[str, str] = {"shadow": "SOURCE", "canary": "SOURCE:PERCENT%"}


def option_type(field: str) -> type:
    """The scalar type an option's text converts to: its field's type, without limits or None."""
    kind: Any = next(f.type for f in msgspec.structs.fields(ServeConfig) if f.name == field)
    while get_origin(kind) is not None:  # Annotated[...], X | None
        kind = next(a for a in get_args(kind) if a is not type(None))
    return cast(type, kind)


def repeatable(field: str) -> bool:
    """Whether a field is a list: its option is given once per item."""
    kind: Any = next(f.type for f in msgspec.structs.fields(ServeConfig) if f.name == field)
    return get_origin(kind) is tuple


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


class ConfigInvalid(ValueError):
    """A server setting is out of range or of the wrong type; the message names where it came from."""


def build(options: Mapping[str, Any], environ: Mapping[str, str]) -> ServeConfig:
    """Options given on the command line (None = not given) over environment variables over defaults."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    hints = msgspec.structs.fields(ServeConfig)
    for f in hints:
        given = options.get(f.name)
        if given is not None:
            values[f.name], source[f.name] = given, option_name(f.name)
        elif repeatable(f.name) and (raw := environ.get(env_name(f.name))) is not None:
            values[f.name], source[f.name] = sources.split(raw), env_name(f.name)
        elif (raw := environ.get(env_name(f.name))) is not None:
            try:
                # Environment values are text; lax conversion turns "8000" into 8000, "true" into True.
                values[f.name] = msgspec.convert(raw, f.type, strict=False)
            except msgspec.ValidationError as exc:
                raise ConfigInvalid(f"{env_name(f.name)}={raw!r}: {exc}") from None
            source[f.name] = env_name(f.name)
    try:
        config = msgspec.convert(values, ServeConfig)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("$.", 1)[-1].rstrip("`") if "$." in text else ""
        where = source.get(field, field or "config")
        raise ConfigInvalid(f"{where}: {text.split(' - at ')[0]}") from None
    if (
        config.drift_window
        and config.drift_min_rows
        and not window_can_report(config.drift_window, config.drift_min_rows)
    ):
        raise ConfigInvalid(
            f"{source.get('drift_min_rows', option_name('drift_min_rows'))}={config.drift_min_rows} "
            f"exceeds {source.get('drift_window', option_name('drift_window'))}={config.drift_window}"
        )
    _check_sources(config, source)
    return config


def _check_sources(config: ServeConfig, source: dict[str, str]) -> None:
    """Every --shadow and --canary follows the source grammar, and the shares fit in 100%."""
    kind = "shadow"
    try:
        for text in config.shadow:
            sources.parse(text)
        kind = "canary"
        canaries = [sources.parse_canary(text) for text in config.canary]
        sources.check_total({str(c.source): c.percent for c in canaries})
    except sources.SourceInvalid as exc:
        raise ConfigInvalid(f"{source.get(kind, option_name(kind))}: {exc}") from None
