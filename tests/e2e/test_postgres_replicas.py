"""Real ``strongroom server`` processes on one PostgreSQL database (SPEC section 11): a database
that freezes (503 within DB_TIMEOUT_SECONDS, health stays up, recovery without a restart), and
a revocation made through one replica reaching another's next request, with the change feed
on, with its listener lost, and with the feed off."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from strongroom.db.change_feed import APPLICATION_NAME
from tests.e2e.test_login_processes import LOGIN_PATH, Server, key_login_body
from tests.support.databases import fresh_database_url, postgres_admin

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROXY = Path(__file__).resolve().parents[2] / "bench" / "tcp_proxy.py"
DB_TIMEOUT = 1.0
# A request during the freeze must be answered, 503, well before this; a hang fails the test.
ANSWER_WITHIN = 3 * DB_TIMEOUT + 2


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url("postgres", request, tmp_path) as url:
        yield url


class Proxy:
    """``bench/tcp_proxy.py`` between the server and PostgreSQL; SIGSTOP freezes it."""

    def __init__(self, target: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(PROXY), "--target", target, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.listen = str(json.loads(self.process.stdout.readline())["listen"])

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_LOG_FORMAT": "json",
        "STRONGROOM_LOGIN_PROCESSES": "0",
        **settings,
    }


def admin_token(server: Server, credentials: dict[str, str]) -> dict[str, str]:
    login = httpx.post(
        server.url + LOGIN_PATH,
        content=key_login_body(credentials["access_id"], credentials["access_key"]),
        timeout=10,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def test_a_frozen_database_answers_503_in_time_and_the_server_recovers(
    postgres_url: str, tmp_path: Path
) -> None:
    url = make_url(postgres_url)
    proxy = Proxy(f"{url.host}:{url.port or 5432}")
    host, port = proxy.listen.rsplit(":", 1)
    through_proxy = url.set(host=host, port=int(port)).render_as_string(hide_password=False)
    server = Server(
        server_env(through_proxy, STRONGROOM_DB_TIMEOUT_SECONDS=str(DB_TIMEOUT)),
        workers=1,
        cwd=tmp_path,
    )
    client = httpx.Client(base_url=server.url, timeout=ANSWER_WITHIN)
    try:
        server.start()
        client.headers.update(admin_token(server, server.bootstrap()))
        created = client.post("/v1/secrets", json={"name": "/app/db", "value": "s3cret"})
        assert created.status_code == 201, created.text
        assert client.get("/v1/secrets/app/db").json()["value"] == "s3cret"

        proxy.freeze()
        # Reads (the hot path), writes, readiness and logins: 503, never a hang.
        for _ in range(3):
            read = client.get("/v1/secrets/app/db")
            assert read.status_code == 503, read.text
            assert read.json()["error"] == "ServiceUnavailable"
        written = client.post("/v1/secrets", json={"name": "/app/new", "value": "v"})
        assert written.status_code == 503, written.text
        listed = client.get("/v1/items")
        assert listed.status_code == 503, listed.text
        ready = client.get("/v1/sys/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")
        login = httpx.post(
            server.url + LOGIN_PATH,
            content=key_login_body("p-000000000000", "x" * 40),
            timeout=ANSWER_WITHIN,
        )
        assert login.status_code == 503, login.text
        # Liveness never asks the database.
        assert httpx.get(server.url + "/v1/sys/health", timeout=2).status_code == 200

        proxy.thaw()
        deadline = time.monotonic() + 60
        while client.get("/v1/secrets/app/db").status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 60 s of the thaw"
            time.sleep(0.2)
        assert client.get("/v1/sys/ready").status_code == 200
        # The write that answered 503 changed nothing, although its statements reached the
        # database once it thawed.
        assert client.get("/v1/secrets/app/new").status_code == 404
        again = client.post("/v1/secrets", json={"name": "/app/new", "value": "v"})
        assert again.status_code == 201, again.text
    finally:
        client.close()
        log = server.stop()
        proxy.stop()
        assert not server.kill_leftovers()
    assert "Traceback" not in log, log


def test_a_revocation_reaches_every_replica_at_once(postgres_url: str, tmp_path: Path) -> None:
    """Replica A revokes a token that replicas B (change feed on) and C (feed off) have cached;
    the next request on either is refused. Again with B's listener just killed."""
    env = server_env(postgres_url)
    servers = {
        "A": Server(env, workers=1, cwd=tmp_path),
        "B": Server(env, workers=1, cwd=tmp_path),
        "C": Server({**env, "STRONGROOM_CHANGE_FEED": "false"}, workers=1, cwd=tmp_path),
    }
    started = [threading.Thread(target=server.start) for server in servers.values()]
    try:
        for thread in started:
            thread.start()
        for thread in started:
            thread.join(60)
        a, b, c = servers["A"], servers["B"], servers["C"]
        credentials = a.bootstrap()
        admin = admin_token(a, credentials)
        assert httpx.post(
            a.url + "/v1/secrets", json={"name": "/app/db", "value": "v"}, headers=admin
        ).is_success

        def revoked_everywhere_at_once() -> None:
            token = admin_token(a, credentials)
            for replica in (b, c):  # each caches the caller behind the token
                cached = httpx.get(replica.url + "/v1/secrets/app/db", headers=token, timeout=10)
                assert cached.status_code == 200, cached.text
            assert httpx.delete(a.url + "/v1/auth/token", headers=token).status_code == 204
            for replica in (b, c):
                refused = httpx.get(replica.url + "/v1/secrets/app/db", headers=token, timeout=10)
                assert refused.status_code == 401, refused.text

        for _ in range(5):
            revoked_everywhere_at_once()
        # The listeners' connections die (a failover, a network cut): until B's listener is
        # back and proven, B reads the generation per request; either way, at once.
        admin_engine = postgres_admin()
        try:
            with admin_engine.connect() as connection:
                killed = connection.execute(
                    text(
                        "select pg_terminate_backend(pid, 5000) from pg_stat_activity "
                        "where application_name = :name and datname = :database"
                    ),
                    {"name": APPLICATION_NAME, "database": make_url(postgres_url).database},
                ).all()
        finally:
            admin_engine.dispose()
        assert killed  # A's and B's listeners (C has none)
        for _ in range(5):
            revoked_everywhere_at_once()
    finally:
        logs = [server.stop() for server in servers.values()]
        for server in servers.values():
            with contextlib.suppress(Exception):
                assert not server.kill_leftovers()
    for log in logs:
        assert "Traceback" not in log, log
