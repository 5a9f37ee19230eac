"""The service as a container image, built and run for real: podman + buildah (Debian packages,
no daemon), a local Debian base made with debootstrap (no registry is reachable), `make image
REF=prod` from a real registry, then readiness, a prediction, X-Model-Version and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelops import files
from tests.conftest import copy_repo, require_tool, run, tool_env
from tests.serve.conftest import free_port

BASE = "localhost/modelops-test-base:bookworm"
IMAGE = "localhost/modelops-test"
# What the base needs to be a stand-in for python:3.11-slim: Python 3.11 with venv, CA certificates.
BASE_PACKAGES = "python3,python3-venv,ca-certificates"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for podman/buildah: runc with explicit nofile/nproc limits (the defaults ask for
    more than this machine grants), cgroupfs, file event log."""
    for tool in ("podman", "buildah", "debootstrap", "runc", "make"):
        require_tool(tool)
    conf = tmp_path_factory.mktemp("containers") / "containers.conf"
    conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    yield tool_env(CONTAINERS_CONF=str(conf), BUILDAH_ISOLATION="chroot")


def podman(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("podman", *args, cwd=Path.cwd(), env=env, check=check)


def container_log(env: dict[str, str], name: str) -> str:
    """What the container wrote: the server logs JSON lines to stderr."""
    logs = podman(env, "logs", name, check=False)
    return logs.stdout + logs.stderr


@pytest.fixture(scope="module")
def base_image(engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    if podman(engine, "image", "exists", BASE, check=False).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            "bookworm",
            rootfs,
            "http://deb.debian.org/debian",
            cwd=rootfs.parent,
            env=engine,
        )
        tarball = rootfs.parent / "base.tar"
        run("tar", "-C", rootfs, "-cf", tarball, ".", cwd=rootfs.parent, env=engine)
        podman(engine, "import", str(tarball), BASE)
    return BASE


BUILT: dict[str, str] = {}  # what the image fixture built the image from


@pytest.fixture(scope="module")
def image(
    engine: dict[str, str],
    base_image: str,
    reproduced_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    repo = copy_repo(reproduced_repo, tmp_path_factory.mktemp("image") / "repo")
    run("modelops", "registry", "register", "--version", "v1.0.0", cwd=repo, env=engine)
    run("modelops", "registry", "promote", "v1.0.0", "--stage", "prod", cwd=repo, env=engine)
    flags = ["--isolation", "chroot", "--network", "host"]
    ca = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    if Path(ca).is_file():
        # This machine's outbound TLS may be re-signed by a local CA; lend it to the build's RUN
        # steps at the path the Containerfile trusts (it is not copied into any layer).
        flags += ["--volume", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"]
    run(
        "make",
        "image",
        "REF=prod",
        f"IMAGE={IMAGE}",
        "ENGINE=podman",
        f"BASE_IMAGE={base_image}",
        f"BUILD_FLAGS={' '.join(flags)}",
        cwd=repo,
        env=engine,
    )
    manifest = files.read_json(repo / "build" / "bundle" / "bundle.json")
    assert manifest["version"] == "v1.0.0"
    BUILT["bundle_sha256"] = files.sha256(repo / "build" / "bundle" / "bundle.json")
    podman(engine, "image", "exists", f"{IMAGE}:v1.0.0")
    return f"{IMAGE}:v1.0.0"


def test_image_runs_non_root_with_the_declared_entrypoint_and_healthcheck(
    engine: dict[str, str], image: str
) -> None:
    config = json.loads(podman(engine, "image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    # The root of trust baked in: the digest of the manifest the registry verified.
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MODELOPS_SERVE_BUNDLE_SHA256"] == BUILT["bundle_sha256"]
    assert config["Entrypoint"] == ["modelops", "serve", "--bundle", "/srv/bundle"]
    health = json.loads(
        podman(engine, "image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout
    )
    assert "/health/ready" in " ".join(health["Test"])


def test_container_serves_the_registered_version_and_stops_cleanly_on_sigterm(
    engine: dict[str, str], image: str, tmp_path: Path
) -> None:
    port = free_port()
    name = f"modelops-test-{port}"
    podman(
        engine,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"MODELOPS_SERVE_PORT={port}",
        "-e",
        "MODELOPS_SERVE_HOST=127.0.0.1",
        image,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=url, timeout=5) as http:
            while True:
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                state = json.loads(podman(engine, "inspect", name).stdout)[0]["State"]
                assert state["Running"], container_log(engine, name)
                assert time.monotonic() < deadline, container_log(engine, name)
                time.sleep(1)
            card = json.loads(podman(engine, "exec", name, "cat", "/srv/bundle/card.json").stdout)
            answer = http.post("/v1/predict", json={"instances": card["reference"]["rows"][:3]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Model-Version"] == "v1.0.0"
        assert answer.json()["model"]["sha256"] == card["artifact"]["sha256"]
        assert podman(engine, "exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman(engine, "healthcheck", "run", name, check=False).returncode == 0

        podman(engine, "stop", "--time", "60", name)  # SIGTERM, then wait for the drain
        state = json.loads(podman(engine, "inspect", name).stdout)[0]["State"]
        shown = podman(engine, "logs", name)
        logs = shown.stdout + shown.stderr
        assert state["ExitCode"] == 0, logs
        assert "prediction log closed" in logs
    finally:
        podman(engine, "rm", "-f", name, check=False)
