"""A login that finds no other request in progress runs on the server's own loop (not the
login thread), and there it never waits for the SQLite writer lock: a busy lock sends the
write to a thread (auth/service.py, LoginService._run and _write)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection

from strongroom.db.engine import Database
from strongroom.serving.placement import Placement
from tests.support.harness import Harness

LOGIN_THREAD = "login-loop"


class WriteTransactions:
    """Every write transaction the app's database opens from now on, as (thread name,
    blocking): observed at ``Database.write``, the one door to the writer lock."""

    def __init__(self, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[tuple[str, bool]] = []
        open_write = database.write

        @contextlib.contextmanager
        def write(*, blocking: bool = True) -> Iterator[Connection]:
            self.opened.append((threading.current_thread().name, blocking))
            with open_write(blocking=blocking) as connection:
                yield connection

        monkeypatch.setattr(database, "write", write)


@pytest.fixture
def app_for(make_harness: Callable[..., Harness]) -> Callable[..., Harness]:
    """The app with logins inline when idle (``inline=True``) or always on the login thread."""

    def build(*, inline: bool) -> Harness:
        return make_harness(placement=Placement.in_process(login_inline_when_idle=inline))

    return build


def test_an_idle_server_logs_in_on_its_own_loop(
    app_for: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(inline=True)
    writes = WriteTransactions(app.services.database, monkeypatch)
    assert app.client.post("/v1/auth/login", json=app.admin.login_body).status_code == 200
    [(thread, blocking)] = writes.opened  # one transaction: the token and its audit event
    assert thread != LOGIN_THREAD
    if app.services.database.dialect == "sqlite":
        # On the loop, without waiting for the writer lock (which was free).
        assert blocking is False
    else:
        # PostgreSQL: a transaction's round trips go to a thread of the database work.
        assert thread.startswith("db-work")
        assert blocking is True


def test_without_inline_logins_run_on_the_login_thread(
    app_for: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(inline=False)
    writes = WriteTransactions(app.services.database, monkeypatch)
    assert app.client.post("/v1/auth/login", json=app.admin.login_body).status_code == 200
    if app.services.database.dialect == "sqlite":
        assert writes.opened == [(LOGIN_THREAD, True)]
    else:
        # PostgreSQL: a login's database work never blocks a loop, the login thread's either.
        [(thread, blocking)] = writes.opened
        assert thread.startswith("db-work")
        assert blocking is True


def test_a_busy_writer_lock_sends_the_inline_write_to_a_thread(
    app_for: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_for(inline=True)
    database = app.services.database
    if database.dialect != "sqlite":
        pytest.skip("the writer lock is SQLite's; PostgreSQL writes always go to a thread")
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with database.write():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(10)
    writes = WriteTransactions(database, monkeypatch)
    threading.Timer(0.3, release.set).start()
    response = app.client.post("/v1/auth/login", json=app.admin.login_body)
    holder.join(10)
    assert response.status_code == 200, response.text
    (loop_thread, first), (other_thread, second) = writes.opened
    assert (first, second) == (False, True)  # refused at once, then waited for in a thread
    assert other_thread not in (loop_thread, LOGIN_THREAD)


def test_inline_failures_are_counted_and_audited(app_for: Callable[..., Harness]) -> None:
    app = app_for(inline=True)
    wrong = {**app.admin.login_body, "access_key": "not-the-key"}
    assert app.client.post("/v1/auth/login", json=wrong).status_code == 401
    events = app.client.get("/v1/audit", params={"limit": 5}, headers=app.admin.headers).json()[
        "events"
    ]
    failed = [e for e in events if e["action"] == "auth.login" and e["status"] == 401]
    assert failed
    assert failed[0]["reason"] == "access key does not match"


def test_the_inline_sts_client_is_built_with_the_app_not_at_the_first_login(
    app_for: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
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
    app = app_for(inline=True)
    at_start = len(built)
    assert at_start >= 2  # the login thread's client and the inline one
    assert app.client.post("/v1/auth/login", json=app.admin.login_body).status_code == 200
    assert app.client.post("/v1/auth/login", json=app.admin.login_body).status_code == 200
    assert len(built) == at_start
