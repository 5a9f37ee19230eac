"""Incoming rows (a local directory, or object storage through a DVC remote) and a frozen profile in;
the drift counts and source `incoming.tally` gives, counted on a dask.distributed cluster, out.

Bin counts add up, so the work splits by file: each task runs `incoming.count_file` (the same
readers, the same binning kernel `modelops.drift.bins` through `report.Tally`) on one file where a
worker sits, and returns a `Part` of plain integer counts; the client adds the parts with
`incoming.combine`. Sums of integers do not depend on the order, so the counts, PSI values and
statuses equal the single-process path's exactly (tests/unit/test_drift_distributed.py). A file
is the unit of work: a log of many segments spreads over the workers, one huge file does not.

Where the files are:

- a local path must be the same path on every worker (a `LocalCluster`, or shared storage);
- `s3://bucket/prefix` is read through the DVC remote whose URL holds it (its endpoint, region and
  any credentials `dvc remote modify --local` stored), else with the environment's credentials;
  `remote://<name>/<path>` names the remote directly, as `dvc import-url` does. Credentials that
  come from the environment must be in the workers' environment too.

dask is imported only here, and only when called: `pip install 'modelops[dask]'`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelops.drift import incoming
from modelops.drift.profile import Profile
from modelops.drift.readers import BATCH_ROWS
from modelops.drift.report import Source, Tally
from modelops.errors import ModelopsError

REMOTE_SCHEMES = ("s3://", "remote://")


def is_remote(path: str) -> bool:
    return path.startswith(REMOTE_SCHEMES)


def tally(
    path: str,
    profile: Profile,
    scheduler: str | None = None,
    batch_rows: int = BATCH_ROWS,
    repo: Path | str = Path("."),
) -> tuple[Tally, Source]:
    """Count every incoming row at `path` on the cluster at `scheduler` (None: a local cluster of
    worker processes, one per core)."""
    fs: Any = None
    if is_remote(path):
        fs, path = remote_filesystem(path, repo)
        files: list[Any] = incoming.discover_remote(fs, path)
    else:
        files = incoming.discover(path)
    with _client(scheduler) as client:
        [shared] = client.scatter([profile], broadcast=True)
        futures = client.map(
            incoming.count_file,
            files,
            profile=shared,
            batch_rows=batch_rows,
            fs=fs,
            pure=False,
        )
        parts = client.gather(futures)
    return incoming.combine(profile, parts, path)


@contextmanager
def _client(scheduler: str | None) -> Iterator[Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ModelopsError(
            "the dask engine needs dask.distributed: pip install 'modelops[dask]' "
            "(or `uv sync --extra dask`)"
        ) from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise ModelopsError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    workers = max(os.cpu_count() or 1, 1)
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        yield client


def remote_filesystem(url: str, repo: Path | str = Path(".")) -> tuple[Any, str]:
    """An fsspec filesystem for `url` configured from the repository's DVC remotes, and the URL
    as that filesystem's protocol spells it (`s3://bucket/key`)."""
    from dvc.config import Config
    from dvc.fs import get_cloud_fs

    dvc_dir = str(Path(repo).resolve() / ".dvc")
    config = Config(dvc_dir=dvc_dir, local_dvc_dir=dvc_dir)  # .dvc/config, then config.local
    if url.startswith("s3://"):
        url = _as_remote_url(url, config.get("remote", {}))
    cls, options, fs_path = get_cloud_fs(config, url=url)
    fs = cls(**options).fs
    protocol = cls.protocol if isinstance(cls.protocol, str) else cls.protocol[0]
    return fs, f"{protocol}://{fs_path}"


def _as_remote_url(url: str, remotes: dict[str, Any]) -> str:
    """`remote://<name>/<rest>` for the remote whose URL is the longest prefix of `url`."""
    best = ""
    name = None
    for remote, conf in remotes.items():
        base = str(conf.get("url", "")).rstrip("/")
        if base and (url == base or url.startswith(base + "/")) and len(base) > len(best):
            best, name = base, remote
    if name is None:
        return url
    rest = url[len(best) :].lstrip("/")
    return f"remote://{name}/{rest}" if rest else f"remote://{name}"
