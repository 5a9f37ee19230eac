"""The text naming a model to serve in (`--shadow`, `--canary`, their environment variables); where
that model comes from, and the share of traffic a canary answers, out.

    staging                         a registry ref (a stage, or name@version): bundled from the
    churn@v1.3.0                      registry, which supplies the digest that vouches for it
    path/to/bundle@<sha256>         a bundle directory and the sha256 of its bundle.json (64 hex
                                      digits, as `modelops registry bundle` printed it)
    SOURCE:5%                       a canary: the source and the percent of traffic it answers
                                      (0 to 100, at most two decimals; the % may be left out)

The root of trust holds for every model: a bundle directory is served only with a digest from
outside it. In an environment variable, several sources are separated by commas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from modelops.errors import ModelopsError

BUCKETS = 10_000  # a canary's share is a number of these buckets: percent with two decimals
_BUNDLE = re.compile(r"^(?P<path>.+)@(?P<sha256>[0-9a-f]{64})$")
_CANARY = re.compile(r"^(?P<source>.+):(?P<percent>\d{1,3}(?:\.\d{1,2})?)%?$")
_REF = re.compile(r"^[^\s,@:][^\s,:]*$")


class SourceInvalid(ModelopsError):
    """A model source text does not follow the grammar; the message says which part."""


class Source(NamedTuple):
    """A registry ref, or a bundle directory with its digest."""

    ref: str | None = None
    directory: Path | None = None
    sha256: str | None = None

    def __str__(self) -> str:
        return self.ref if self.ref is not None else f"{self.directory}@{self.sha256}"


class Canary(NamedTuple):
    source: Source
    percent: float


def parse(text: str) -> Source:
    """A source text as a Source; SourceInvalid when it is neither form."""
    text = text.strip()
    if m := _BUNDLE.match(text):
        return Source(directory=Path(m["path"]), sha256=m["sha256"])
    if "@" in text and re.search(r"@[0-9a-fA-F]{40,}$", text):
        raise SourceInvalid(
            f"{text[:80]!r}: a bundle directory's digest is the 64 lower-case hex digits of the "
            "sha256 of its bundle.json"
        )
    if not _REF.match(text):
        raise SourceInvalid(
            f"{text[:80]!r}: not a registry ref (e.g. staging, churn@v1.3.0) nor a bundle "
            "directory with its digest (path/to/bundle@<sha256 of its bundle.json>)"
        )
    return Source(ref=text)


def parse_canary(text: str) -> Canary:
    """`SOURCE:PERCENT%` as a Canary; SourceInvalid naming what is wrong."""
    m = _CANARY.match(text.strip())
    if m is None:
        raise SourceInvalid(
            f"{text[:80]!r}: a canary is SOURCE:PERCENT% (e.g. staging:5%, "
            "path/to/bundle@<sha256>:0.5%)"
        )
    percent = float(m["percent"])
    if percent > 100:
        raise SourceInvalid(f"{text[:80]!r}: a share is 0 to 100 percent, not {m['percent']}")
    return Canary(parse(m["source"]), percent)


def canary_text(source: Source, percent: float) -> str:
    return f"{source}:{percent:g}%"


def split(value: str) -> tuple[str, ...]:
    """An environment variable's comma-separated sources, blanks dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def buckets(percent: float) -> int:
    """How many of the BUCKETS a share of `percent` percent takes."""
    return round(percent * BUCKETS / 100)


def check_total(shares: dict[str, float]) -> None:
    """Shares of the traffic, by model, leave the rest (possibly nothing) to the primary."""
    total = sum(buckets(p) for p in shares.values())
    if total > BUCKETS:
        listed = ", ".join(f"{k} {p:g}%" for k, p in shares.items())
        raise SourceInvalid(
            f"canary shares add up to {total * 100 / BUCKETS:g}% ({listed}); at most 100%"
        )


def resolve(source: Source, scratch: Path, repo: Path = Path(".")) -> Source:
    """A bundle directory with its digest: the source itself, or the registry's bundle of a ref,
    written under `scratch` and vouched for by the registry (which checked every file against the
    tagged commit)."""
    if source.ref is None:
        return source
    from modelops.registry.bundle import manifest_sha256, materialise

    scratch.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", source.ref)
    directory = scratch / name
    n = 1
    while directory.exists():
        n += 1
        directory = scratch / f"{name}-{n}"
    materialise(source.ref, directory, repo)
    return Source(directory=directory, sha256=manifest_sha256(directory))
