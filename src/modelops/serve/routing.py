"""A request's routing key in; the model that answers it out: the primary, or a canary on its share.

The key (the `X-Routing-Key` header if the client sent one, else the request id) is hashed into one
of `sources.BUCKETS` buckets; canary k answers the buckets from the sum of the shares before it up
to that sum plus its own, the primary the rest. The same key always lands in the same bucket, so a
client that sends one keeps its model for as long as the shares stay, and raising a share only
moves keys from the primary to that canary. Over many keys a canary answers its share within
binomial noise.

The shares can change without a restart (PUT /admin/canary). With several workers the change is
written to the workers' shared directory, and every worker reads it at its next tick (twice a
second); a worker started later (one the supervisor replaced) reads it when it starts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated

import msgspec

from modelops.errors import DataIssue, DataValidationError
from modelops.serve import logs, sources

SHARES_FILE = "canary-shares.json"
log = logging.getLogger(logs.SERVER)

Percent = Annotated[float, msgspec.Meta(ge=0, le=100, description="percent of the traffic")]


class CanaryShares(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """PUT /admin/canary: the percent of the traffic each canary answers (a canary left out gets
    0%: it stays loaded and answers nothing). GET /admin/canary: the shares now, and the primary's."""

    shares: dict[str, Percent]
    primary: Percent | None = None  # in answers only: what the canaries leave to the primary


def bucket(key: bytes) -> int:
    """The key's bucket, the same in every process and on every run."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % sources.BUCKETS


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the bearer token (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class CanaryRouter:
    """The canaries' shares, and which model each routing key goes to."""

    def __init__(
        self,
        canaries: Sequence[str],
        shares: Mapping[str, float],
        shared: Path | None = None,
        on_change: Callable[[dict[str, float]], None] = lambda shares: None,
    ) -> None:
        self.canaries = list(canaries)  # versions, in the order their bucket ranges lie
        self._on_change = on_change
        self._file = shared / SHARES_FILE if shared is not None else None
        self._seen: tuple[int, int] | None = None
        self._cuts: list[tuple[int, int]] = []
        self.shares: dict[str, float] = {}
        self._apply(dict(shares))
        self.sync()

    def choose(self, key: bytes) -> int:
        """The index of the canary that answers `key`, or -1 for the primary."""
        b = bucket(key)
        for bound, index in self._cuts:
            if b < bound:
                return index
        return -1

    def state(self) -> CanaryShares:
        taken = sum(sources.buckets(p) for p in self.shares.values())
        return CanaryShares(dict(self.shares), (sources.BUCKETS - taken) * 100 / sources.BUCKETS)

    def change(self, shares: Mapping[str, float]) -> CanaryShares:
        """New shares (canaries not named get 0%), for this worker now and every other worker at
        its next tick; DataValidationError naming an unknown version or a total above 100%."""
        unknown = [v for v in shares if v not in self.canaries]
        issues = [
            DataIssue(f"$.shares.{v[:64]}", f"not a canary of this server ({self._listed()})", 0)
            for v in unknown
        ]
        try:
            sources.check_total(dict(shares))
        except sources.SourceInvalid as exc:
            issues.append(DataIssue("$.shares", str(exc), 0))
        if issues:
            raise DataValidationError("request body", issues)
        new = {v: float(shares.get(v, 0.0)) for v in self.canaries}
        if self._file is not None:
            tmp = self._file.with_name(f".{SHARES_FILE}.{os.getpid()}.tmp")
            tmp.write_bytes(msgspec.json.encode(CanaryShares(new)))
            os.replace(tmp, self._file)
        self._apply(new)
        logs.event(log, logging.WARNING, "canary shares changed", shares=new)
        return self.state()

    def sync(self) -> None:
        """Take the shares another worker wrote, if they changed since this worker last looked."""
        if self._file is None:
            return
        try:
            st = self._file.stat()
        except FileNotFoundError:
            return
        seen = (st.st_ino, st.st_mtime_ns)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            written = msgspec.json.decode(self._file.read_bytes(), type=CanaryShares)
        except (OSError, msgspec.DecodeError) as exc:
            logs.event(log, logging.ERROR, "canary shares unreadable", error=str(exc))
            return
        self._apply({v: written.shares.get(v, 0.0) for v in self.canaries})

    def _apply(self, shares: dict[str, float]) -> None:
        cuts, bound = [], 0
        for index, version in enumerate(self.canaries):
            bound += sources.buckets(shares.get(version, 0.0))
            cuts.append((bound, index))
        self._cuts = cuts
        self.shares = {v: shares.get(v, 0.0) for v in self.canaries}
        self._on_change(dict(self.shares))

    def _listed(self) -> str:
        return "canaries: " + ", ".join(self.canaries)
