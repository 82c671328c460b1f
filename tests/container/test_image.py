"""The server image, built and run for real (``make test-container``; not part of ``make test``).

Builds ``strongroom:test`` from the Dockerfile on the local stand-in for debian:bookworm-slim
(``container/base-image.sh``) with podman, then runs it with buildah against a fresh PostgreSQL
database on 127.0.0.1: this kernel's cgroup layout lets no OCI runtime start a container, but
``buildah run --isolation chroot --network host`` runs the image's own entrypoint and command
as the image's user. In order, as an operator meets them:

1. docker-compose.yml's one-shot ``init`` service (its command and environment, read from the
   file): migrates, creates the master key, prints the admin key; run again, it changes nothing.
2. The image's entrypoint and command, unchanged, read from the image: the server answers.
3. The image's HEALTHCHECK command passes, and fails when pointed at another port.
4. Every process of the container runs as uid 10001.
5. A secret written through the server is read back.
6. SIGTERM to the container's main process (tini) leaves no process behind within 15 s.

Any missing tool or failed step fails the run with what went wrong; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.server_process import free_port
from tests.support.databases import new_postgres_database, postgres_url

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

CHECKOUT = Path(__file__).resolve().parents[2]
IMAGE = "strongroom:test"
SERVER_UID = 10001
STOP_WITHIN_SECONDS = 15


def _fail_with_output(what: str, result: subprocess.CompletedProcess[str]) -> None:
    output = (result.stdout or "") + (result.stderr or "")
    tail = "\n".join(output.splitlines()[-60:])
    pytest.fail(f"{what} failed (exit {result.returncode}):\n{tail}", pytrace=False)


def _run(argv: Sequence[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=CHECKOUT
    )
    if result.returncode != 0:
        _fail_with_output(what, result)
    return result


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    user: str


@pytest.fixture(scope="module")
def image() -> Image:
    """strongroom:test, built now (layers cached by podman), and its configuration."""
    missing = [tool for tool in ("podman", "buildah", "debootstrap") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: apt-get install podman buildah debootstrap "
            "(.ci/run does)",
            pytrace=False,
        )
    _run(["container/base-image.sh"], "making the debian:bookworm-slim stand-in", 900)
    _run(
        ["podman", "build", "--pull=never", "--isolation", "chroot", "--network", "host",
         "--format", "docker", "-t", IMAGE, "."],
        "podman build", 1500,
    )  # fmt: skip
    inspected = json.loads(_run(["podman", "image", "inspect", IMAGE], "inspect", 60).stdout)[0]
    config: dict[str, Any] = inspected["Config"]
    check = (inspected.get("Healthcheck") or {}).get("Test") or []
    if not check or check[0] not in ("CMD", "CMD-SHELL"):
        pytest.fail(f"the image has no usable HEALTHCHECK: {check!r}", pytrace=False)
    healthcheck = check[1:] if check[0] == "CMD" else ["/bin/sh", "-c", check[1]]
    return Image(
        entrypoint=list(config.get("Entrypoint") or []),
        cmd=list(config.get("Cmd") or []),
        healthcheck=healthcheck,
        user=config.get("User", ""),
    )


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1 (required: no skipping here)."""
    with new_postgres_database("strongroom_container", required=True) as name:
        yield postgres_url(name)


def _compose_service(name: str) -> dict[str, Any]:
    compose = yaml.safe_load((CHECKOUT / "docker-compose.yml").read_text())
    service: dict[str, Any] = compose["services"][name]
    return service


@dataclass
class Container:
    name: str
    env: dict[str, str]

    def run(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv, env=env), capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip

    def command(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> list[str]:
        flags = [f"--env={key}={value}" for key, value in {**self.env, **(env or {})}.items()]
        return [
            "buildah", "run", "--isolation", "chroot", "--network", "host", *flags,
            self.name, "--", *argv,
        ]  # fmt: skip


@pytest.fixture(scope="module")
def container(image: Image, database_url: str) -> Iterator[Container]:
    """A working container of the image, with docker-compose.yml's environment for the app
    (its database URL pointed at the test's database) and a free loopback port."""
    environment = dict(_compose_service("server")["environment"])
    environment["STRONGROOM_DATABASE_URL"] = database_url
    environment.pop("STRONGROOM_TRUSTED_PROXIES", None)  # no load balancer here
    environment["STRONGROOM_HOST"] = "127.0.0.1"
    environment["STRONGROOM_PORT"] = str(free_port())
    name = f"strongroom-test-{secrets.token_hex(4)}"
    _run(["buildah", "from", "--pull=never", "--name", name, IMAGE], "buildah from", 120)
    try:
        yield Container(name=name, env=environment)
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120, check=False)


class Credentials:
    """The admin key the one-shot printed, for the tests after it."""

    access_id = ""
    access_key = ""


def test_the_compose_one_shot_migrates_bootstraps_and_is_idempotent(
    image: Image, container: Container
) -> None:
    init = _compose_service("init")
    command = image.entrypoint + list(init.get("command") or image.cmd)
    environment = dict(init["environment"])
    environment["STRONGROOM_DATABASE_URL"] = container.env["STRONGROOM_DATABASE_URL"]
    assert environment == {k: container.env[k] for k in environment}, (
        "init and server see the same settings"
    )

    # A named volume mounted here starts as a copy of this directory, owner and mode included.
    key_file = environment["STRONGROOM_MASTER_KEY_FILE"]
    key_dir = container.run(["stat", "-c", "%u %a", str(Path(key_file).parent)])
    assert key_dir.stdout.split() == [str(SERVER_UID), "700"], key_dir.stdout + key_dir.stderr

    first = container.run(command)
    if first.returncode != 0:
        _fail_with_output("the init one-shot", first)
    access_id = re.search(r"Access ID:\s+(p-[a-z0-9]{12})", first.stdout)
    access_key = re.search(r"Access key:\s+(\S+)", first.stdout)
    assert access_id, first.stdout + first.stderr
    assert access_key, first.stdout + first.stderr
    assert "Created the master key file" in first.stderr
    Credentials.access_id, Credentials.access_key = access_id.group(1), access_key.group(1)

    again = container.run(command)
    if again.returncode != 0:
        _fail_with_output("the init one-shot, run a second time", again)
    assert "Already bootstrapped" in again.stderr
    assert "Access key" not in again.stdout

    listing = container.run(["stat", "-c", "%u %a", key_file])
    assert listing.stdout.split() == [str(SERVER_UID), "600"], listing.stdout + listing.stderr


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, root directory) of every process now running."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            root = os.readlink(entry / "root")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        found[int(entry.name)] = (int(ppid.group(1)) if ppid else 0, root)
    return found


def _argv(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _uids_gids(pid: int) -> tuple[list[int], list[int]]:
    status = (Path("/proc") / str(pid) / "status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.MULTILINE)
    assert uids
    assert gids
    return [int(u) for u in uids.group(1).split()], [int(g) for g in gids.group(1).split()]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    main_pid: int  # the image's entrypoint: what Docker runs as PID 1
    root: str  # the container's root directory, as /proc/PID/root shows it
    log: Path

    def in_container(self) -> list[int]:
        return [pid for pid, (_, root) in _processes().items() if root == self.root]


@pytest.fixture(scope="module")
def server(
    image: Image, container: Container, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The image's own entrypoint and command, as configured in the image, running."""
    if not Credentials.access_id:
        pytest.fail("the one-shot did not bootstrap (see the test before)", pytrace=False)
    log = tmp_path_factory.mktemp("server") / "server.log"
    argv = image.entrypoint + image.cmd
    with log.open("wb") as sink:
        process = subprocess.Popen(container.command(argv), stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{container.env['STRONGROOM_PORT']}"
    running: RunningServer | None = None
    try:
        deadline = time.monotonic() + 60
        while running is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the image's command {argv} did not serve {url}/v1/sys/health "
                    f"(exit {process.returncode}):\n{log.read_text(errors='replace')}",
                    pytrace=False,
                )
            try:
                healthy = httpx.get(url + "/v1/sys/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                healthy = False
            main = [pid for pid in _descendants(process.pid) if _argv(pid) == argv]
            if healthy and main:
                root = _processes()[main[0]][1]
                running = RunningServer(url, process, main[0], root, log)
            else:
                time.sleep(0.2)
        yield running
    finally:
        for pid in running.in_container() if running else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    processes = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in processes.items() if ppid == parent]
        found += children
        frontier += children
    return found


def test_the_server_answers_health_and_readiness(server: RunningServer) -> None:
    assert httpx.get(server.url + "/v1/sys/health", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(server.url + "/v1/sys/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "keys": "ok"}


def test_docs_are_served_from_the_images_own_files(server: RunningServer) -> None:
    """The Dockerfile strips Swagger UI's package down to what /docs serves."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/docs").status_code == 200
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
            assert client.get(f"/docs/static/{name}").status_code == 200, name
        assert client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_the_image_healthcheck_follows_the_port_setting(
    image: Image, container: Container, server: RunningServer
) -> None:
    healthy = container.run(image.healthcheck, timeout=60)
    if healthy.returncode != 0:
        _fail_with_output(f"the image's HEALTHCHECK {image.healthcheck}", healthy)
    elsewhere = container.run(
        image.healthcheck, env={"STRONGROOM_PORT": str(free_port())}, timeout=60
    )
    assert elsewhere.returncode != 0, "a healthcheck that passes on a dead port checks nothing"


def test_every_process_of_the_container_runs_as_the_image_user(
    image: Image, server: RunningServer
) -> None:
    assert image.user.split(":")[0] == str(SERVER_UID)
    pids = server.in_container()
    commands = {pid: " ".join(_argv(pid))[:100] for pid in pids}
    # tini, the server (uvicorn's supervisor), its workers and their login processes
    assert len(pids) >= 4, commands
    for pid in pids:
        uids, gids = _uids_gids(pid)
        assert set(uids) == {SERVER_UID}, f"{commands[pid]} runs with uids {uids}"
        assert set(gids) == {SERVER_UID}, f"{commands[pid]} runs with gids {gids}"


def test_a_secret_written_through_the_server_reads_back(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        login = client.post(
            "/v1/auth/login",
            json={
                "access_id": Credentials.access_id,
                "access_type": "access_key",
                "access_key": Credentials.access_key,
            },
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        value = secrets.token_urlsafe(24)
        created = client.post(
            "/v1/secrets", json={"name": "/container/check", "value": value}, headers=headers
        )
        assert created.status_code in (200, 201), created.text
        read = client.get("/v1/secrets/container/check", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["value"] == value


def test_sigterm_to_the_main_process_leaves_no_process_behind(server: RunningServer) -> None:
    before = server.in_container()
    assert server.main_pid in before
    os.kill(server.main_pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WITHIN_SECONDS
    left = before
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = server.in_container()
    log = server.log.read_text(errors="replace")
    assert not left, (
        f"{len(left)} process(es) still running {STOP_WITHIN_SECONDS} s after SIGTERM: "
        + "; ".join(" ".join(_argv(pid))[:100] for pid in left)
        + f"\n{log}"
    )
    assert server.process.wait(timeout=30) == 0, f"the container exited non-zero:\n{log}"
