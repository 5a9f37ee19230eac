"""A real S3 API on loopback for tests: moto's standalone server, started and stopped by the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3

from tests.conftest import tool_env

# Credentials the moto server accepts; they live only in the environment of the processes started
# by the tests, never in a committed config.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "modelops-test",
    "AWS_SECRET_ACCESS_KEY": "modelops-test-secret",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    env: dict[str, str]

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            **{
                "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            },
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(log_dir: Path) -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_dir / "moto_server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start; see {log_dir / 'moto_server.log'}"
                    ) from None
                time.sleep(0.2)
        env = tool_env(**CREDENTIALS, AWS_DEFAULT_REGION="us-east-1")
        yield S3Server(endpoint=endpoint, env=env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
