"""Operating a real ``strongroom server``: start-up problems, replicas starting together,
SIGTERM, and a disk that fills up under a running server (SPEC sections 1 and 11)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import STRONGROOM, free_port
from tests.e2e.test_login_processes import (
    LOGIN_MARK,
    LOGIN_PATH,
    RawConnection,
    Server,
    alive,
    children,
    key_login_body,
    request_bytes,
    wait_until,
)
from tests.support.databases import new_postgres_database, postgres_url

pytestmark = pytest.mark.slow


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def clean_env(**settings: str) -> dict[str, str]:
    """The caller's environment without its STRONGROOM_* settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "PROMETHEUS"))}
    return {**env, **settings}


def run_server(env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """``strongroom server`` expected to stop by itself: (exit code, everything it printed)."""
    result = subprocess.run(
        [STRONGROOM, "server", "--port", str(free_port())],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# -- start-up problems: one line, exit 1 ----------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            {"STRONGROOM_STS_TIMEOUT_SECONDS": "soon"},
            "STRONGROOM_STS_TIMEOUT_SECONDS",
            id="bad-value",
        ),
        pytest.param(
            {"STRONGROOM_WORKERS": "0"},
            "STRONGROOM_WORKERS",
            id="bad-workers",
        ),
        pytest.param(
            {"STRONGROOM_TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"},
            "STRONGROOM_TRUSTED_PROXIES: Value error, 'not-a-network' is not an IP address",
            id="bad-trusted-proxies",
        ),
        pytest.param(
            {"STRONGROOM_MASTER_KEY": "c2hvcnQ="},
            "master key",
            id="bad-master-key",
        ),
        pytest.param({"STRONGROOM_MASTER_KEY": ""}, "no master key is configured", id="no-key"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_1(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    env = clean_env(
        **{
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'strongroom.db'}",
            "STRONGROOM_MASTER_KEY": master_key(),
            **settings,
        }
    )
    code, output = run_server(env, tmp_path)
    assert code == 1, output
    assert "Traceback" not in output, output
    assert "listening" not in output, output
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert expected in errors[0], output


def test_an_unwritable_data_folder_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # A data folder that cannot be made (its parent is a file): unwritable even for root.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = clean_env(
        STRONGROOM_DATABASE_URL=f"sqlite:///{blocker / 'data' / 'strongroom.db'}",
        STRONGROOM_MASTER_KEY=master_key(),
    )
    code, output = run_server(env, tmp_path)
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert f"the data folder {blocker / 'data'} is not writable" in errors[0]


def test_an_unreachable_database_is_retried_then_one_line_and_exit_1(tmp_path: Path) -> None:
    closed_port = free_port()  # nothing listens there
    env = clean_env(
        STRONGROOM_DATABASE_URL=(
            f"postgresql+psycopg://strongroom:hunter2@127.0.0.1:{closed_port}/strongroom"
        ),
        STRONGROOM_MASTER_KEY=master_key(),
        STRONGROOM_DB_START_WAIT_SECONDS="2.5",
        STRONGROOM_LOG_FORMAT="json",
    )
    started = time.monotonic()
    code, output = run_server(env, tmp_path)
    assert code == 1, output
    assert time.monotonic() - started < 30
    assert "Traceback" not in output, output
    assert "hunter2" not in output, output
    attempts = [json.loads(line) for line in output.splitlines() if "database_unreachable" in line]
    assert [a["attempt"] for a in attempts] == [1, 2], output  # each attempt logged
    errors = error_lines(output)
    assert len(errors) == 1, output
    assert (
        f"cannot reach the database postgresql+psycopg://strongroom:***@127.0.0.1:{closed_port}"
        in errors[0]
    ), output
    assert "tried 3 times" in errors[0], output


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [STRONGROOM, "server", "--port", str(port)],
            env=clean_env(
                STRONGROOM_DATABASE_URL=f"sqlite:///{tmp_path / 'strongroom.db'}",
                STRONGROOM_MASTER_KEY=master_key(),
            ),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


# -- replicas starting together on one empty PostgreSQL database ----------------------------


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A new PostgreSQL database with nothing in it (not even the schema)."""
    with new_postgres_database("strongroom_empty") as name:
        # With a password that must never be printed (trust authentication ignores it).
        yield postgres_url(name).replace("postgres@", "postgres:hunter2@", 1)


@pytest.mark.postgres
def test_three_replicas_started_together_on_an_empty_database_all_come_up(
    empty_postgres: str, tmp_path: Path
) -> None:
    env = {
        "STRONGROOM_DATABASE_URL": empty_postgres,
        "STRONGROOM_MASTER_KEY": master_key(),
        "STRONGROOM_LOG_FORMAT": "json",
        "STRONGROOM_LOGIN_PROCESSES": "0",
        "STRONGROOM_WORKRES": "2",  # misspelt: warned about, by name
    }
    replicas = [Server(env, workers=1, cwd=tmp_path) for _ in range(3)]
    errors: list[BaseException] = []

    def start(server: Server) -> None:
        try:
            server.start()
        except BaseException as exc:  # reported below, with the server's output
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        for server in replicas:
            assert httpx.get(server.url + "/v1/sys/ready", timeout=10).status_code == 200
        # The replicas share one set of data keys: a token minted by one works on another.
        credentials = replicas[0].bootstrap()
        login = httpx.post(
            replicas[0].url + LOGIN_PATH,
            content=key_login_body(credentials["access_id"], credentials["access_key"]),
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = {"Authorization": f"Bearer {login.json()['token']}"}
        for server in replicas[1:]:
            described = httpx.get(server.url + "/v1/auth/token", headers=token, timeout=10)
            assert described.status_code == 200, described.text
    finally:
        logs = [server.stop() for server in replicas]
        for server in replicas:
            assert not server.kill_leftovers()
    for log in logs:
        assert "Traceback" not in log, log
        assert "hunter2" not in log, log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        start_line = next(line for line in lines if line["event"] == "server_listening")
        assert start_line["database"].startswith("postgresql+psycopg://postgres:***@"), log
        unknown = next(line for line in lines if line["event"] == "unknown_setting")
        assert unknown["level"] == "warning"
        assert unknown["message"] == (
            "unknown setting STRONGROOM_WORKRES is ignored (did you mean STRONGROOM_WORKERS?)"
        ), log


# -- SIGTERM (SPEC section 11) --------------------------------------------------------------


def sqlite_env(root: Path, **extra: str) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": master_key(),
        "STRONGROOM_LOG_FORMAT": "json",
        **extra,
    }


def test_sigterm_closes_idle_connections_finishes_in_flight_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    server = Server(sqlite_env(tmp_path), workers=2, cwd=tmp_path)
    credentials = server.bootstrap()
    body = key_login_body(credentials["access_id"], credentials["access_key"])
    server.start()
    tree = server.tree()
    idle = RawConnection.open(server.port, timeout=10)  # kept alive after one request
    silent = RawConnection.open(server.port, timeout=10)  # connected, nothing sent yet
    slow = RawConnection.open(server.port, timeout=20)  # a request in flight at the signal
    try:
        idle.send(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.response().status == 200
        slow.send(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert slow.response().status == 200
        head, payload = request_bytes(LOGIN_PATH, body)
        slow.send(head + payload[:5])  # a worker waits for the rest of this login's body
        time.sleep(0.3)
        assert server.process is not None
        main = server.process
        signalled = time.monotonic()
        main.send_signal(signal.SIGTERM)

        # Idle connections are closed at once, the one that sent nothing included.
        assert idle.closed_by_server()
        assert silent.closed_by_server()
        assert time.monotonic() - signalled < 3
        # No new connection is accepted.
        wait_until(lambda: not _accepts(server.port), 5, "still accepting")
        # What is in flight is finished.
        time.sleep(1)
        slow.send(payload[5:])
        answer = slow.response()
        assert answer.status == 200, answer.body
        assert answer.json()["token"].startswith("t-")
        assert main.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 12
    finally:
        for connection in (idle, silent, slow):
            connection.close()
        log = server.stop()
        left = server.kill_leftovers()
    assert not left, f"left running: {left}"
    assert not [pid for pid in tree if alive(pid)]
    assert "Traceback" not in log, log


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- a disk that fills up under a running SQLite server -------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 512)
    return filler


def statuses(client: httpx.Client, count: int, write: bool) -> list[Any]:
    found: list[Any] = []
    for index in range(count):
        try:
            if write:
                response = client.post(
                    "/v1/secrets", json={"name": f"/full/{secrets.token_hex(4)}", "value": "v"}
                )
            else:
                response = client.get("/v1/secrets/disk/a")
            found.append(response.status_code)
        except httpx.HTTPError as exc:
            found.append(type(exc).__name__)
        if index % 5 == 4:
            time.sleep(0.05)
    return found


def serving_workers(server: Server) -> list[int]:
    """The server's live workers: its children that are neither login processes nor helpers."""
    return [
        pid
        for pid in children(server.pid)
        if LOGIN_MARK not in cmdline(pid) and "resource_tracker" not in cmdline(pid)
    ]


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def test_a_full_disk_answers_503_without_a_crash_loop_and_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "data", "8m") as data:
        env = {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{data / 'strongroom.db'}",
            "STRONGROOM_MASTER_KEY": master_key(),
            "STRONGROOM_LOG_FORMAT": "json",
        }
        server = Server(env, workers=2, cwd=tmp_path)
        credentials = server.bootstrap()
        server.start()
        try:
            client = httpx.Client(base_url=server.url, timeout=10)
            token = client.post(
                LOGIN_PATH,
                content=key_login_body(credentials["access_id"], credentials["access_key"]),
            ).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            assert client.post("/v1/secrets", json={"name": "/disk/a", "value": "x"}).is_success
            filler = fill(data)

            # What still fits in pages already allocated (the WAL's, a journal's last page)
            # succeeds; everything else is 503, never a 500 or a dropped connection.
            for write, ok in ((True, 201), (False, 200)):
                found = statuses(client, 30, write=write)
                assert 503 in found, found
                assert set(found) <= {ok, 503}, found
            # A worker dies (as when SQLite's -shm mapping cannot be backed: SIGBUS): the
            # supervisor logs it and starts another, which starts although nothing can be
            # written, and answers 503 too.
            victim = serving_workers(server)[0]
            os.kill(victim, signal.SIGBUS)
            wait_until(
                lambda: len(serving_workers(server)) == 2 and victim not in serving_workers(server),
                20,
                "no replacement worker",
            )
            time.sleep(3)  # a replacement that died at start would have been restarted by now
            exited = [
                json.loads(line) for line in server.log().splitlines() if "worker_exited" in line
            ]
            assert [(e["pid"], e["signal"]) for e in exited] == [(victim, "SIGBUS")]
            found = statuses(client, 20, write=False)
            assert 503 in found, found
            assert set(found) <= {200, 503}, found

            filler.unlink()  # room again: the server recovers by itself
            wait_until(
                lambda: set(statuses(client, 5, write=False)) == {200}, 20, "reads not back", 0.5
            )
            assert set(statuses(client, 10, write=True)) == {201}
            assert set(statuses(client, 20, write=False)) == {200}
            client.close()
        finally:
            log = server.stop()
            left = server.kill_leftovers()
        assert not left
        assert "Traceback" not in log, log
        verify = server.run_cli("audit", "verify", "--json")
        assert json.loads(verify.stdout)["ok"] is True
