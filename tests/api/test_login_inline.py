"""A login that finds no other request in progress runs on the server's own loop (not the
login thread), and there it never waits for the SQLite writer lock: a busy lock sends the
write to a thread (auth/service.py, LoginService._run and _write)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from strongroom.api.app import create_app
from strongroom.audit.writer import AuditWriter
from strongroom.auth.service import LoginService
from strongroom.bootstrap import bootstrap
from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from strongroom.serving.placement import Placement

LOGIN_THREAD = "login-loop"


class Minted:
    """Where and how each mint ran: (thread name, blocking)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, bool]] = []
        original = LoginService._mint

        def mint(service: LoginService, *args: Any, **kwargs: Any) -> Any:
            blocking = kwargs.get("blocking", args[5] if len(args) > 5 else True)
            self.calls.append((threading.current_thread().name, bool(blocking)))
            return original(service, *args, **kwargs)

        monkeypatch.setattr(LoginService, "_mint", mint)


@pytest.fixture
def client_for(
    make_settings: Callable[..., Settings], master_key: LocalMasterKey
) -> Iterator[Callable[..., tuple[TestClient, dict[str, str]]]]:
    made: list[TestClient] = []

    def build(*, inline: bool) -> tuple[TestClient, dict[str, str]]:
        app = create_app(
            make_settings(),
            master_key=master_key,
            placement=Placement.in_process(login_inline_when_idle=inline),
        )
        client = TestClient(app)
        client.__enter__()
        made.append(client)
        services = app.state.services
        creds = bootstrap(
            services.database, services.keys, AuditWriter(services.database, services.keys.audit)
        )
        body = {
            "access_id": creds.access_id,
            "access_type": "access_key",
            "access_key": creds.access_key,
        }
        return client, body

    yield build
    for client in made:
        client.__exit__(None, None, None)


def test_an_idle_server_logs_in_on_its_own_loop(
    client_for: Callable[..., tuple[TestClient, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    minted = Minted(monkeypatch)
    client, body = client_for(inline=True)
    assert client.post("/v1/auth/login", json=body).status_code == 200
    [(thread, blocking)] = minted.calls
    assert thread != LOGIN_THREAD
    if client.app.state.services.database.dialect == "sqlite":  # type: ignore[attr-defined]
        # On the loop, without waiting for the writer lock (which was free).
        assert blocking is False
    else:
        # PostgreSQL: a transaction's round trips go to a thread of the database work.
        assert thread.startswith("db-work")
        assert blocking is True


def test_without_inline_logins_run_on_the_login_thread(
    client_for: Callable[..., tuple[TestClient, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    minted = Minted(monkeypatch)
    client, body = client_for(inline=False)
    assert client.post("/v1/auth/login", json=body).status_code == 200
    if client.app.state.services.database.dialect == "sqlite":  # type: ignore[attr-defined]
        assert minted.calls == [(LOGIN_THREAD, True)]
    else:
        # PostgreSQL: a login's database work never blocks a loop, the login thread's either.
        [(thread, blocking)] = minted.calls
        assert thread.startswith("db-work")
        assert blocking is True


def test_a_busy_writer_lock_sends_the_inline_write_to_a_thread(
    client_for: Callable[..., tuple[TestClient, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, body = client_for(inline=True)
    database = client.app.state.services.database  # type: ignore[attr-defined]
    if database.dialect != "sqlite":
        pytest.skip("the writer lock is SQLite's; PostgreSQL writes always go to a thread")
    minted = Minted(monkeypatch)
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with database.write():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(10)
    threading.Timer(0.3, release.set).start()
    response = client.post("/v1/auth/login", json=body)
    holder.join(10)
    assert response.status_code == 200, response.text
    (loop_thread, first), (other_thread, second) = minted.calls
    assert (first, second) == (False, True)  # refused at once, then waited for in a thread
    assert other_thread not in (loop_thread, LOGIN_THREAD)


def test_inline_failures_are_counted_and_audited(
    client_for: Callable[..., tuple[TestClient, dict[str, str]]],
) -> None:
    client, body = client_for(inline=True)
    wrong = {**body, "access_key": "not-the-key"}
    assert client.post("/v1/auth/login", json=wrong).status_code == 401
    token = client.post("/v1/auth/login", json=body).json()["token"]
    events = client.get(
        "/v1/audit", params={"limit": 5}, headers={"Authorization": f"Bearer {token}"}
    ).json()["events"]
    failed = [e for e in events if e["action"] == "auth.login" and e["status"] == 401]
    assert failed
    assert failed[0]["reason"] == "access key does not match"


def test_the_inline_sts_client_is_built_with_the_app_not_at_the_first_login(
    client_for: Callable[..., tuple[TestClient, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building an STS client takes tens of milliseconds of CPU (httpx's TLS context): at the
    first inline login it would stall the loop that serves reads."""
    from strongroom.auth.aws_iam import sts_client as sts_client_module

    built: list[str] = []
    original = sts_client_module.create_sts_http_client

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr("strongroom.api.app.create_sts_http_client", counted)
    client, body = client_for(inline=True)
    at_start = len(built)
    assert at_start >= 2  # the login thread's client and the inline one
    assert client.post("/v1/auth/login", json=body).status_code == 200
    assert client.post("/v1/auth/login", json=body).status_code == 200
    assert len(built) == at_start
