"""Database work within DB_TIMEOUT_SECONDS (SPEC sections 1 and 11): the thread seam's deadline
(db/work.py, db/deadline.py), the asynchronous statements' own (db/pg_async.py), and pooled
connections that went stale while idle (db/engine.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text

from strongroom.db import engine as engine_module
from strongroom.db.engine import Database
from strongroom.db.pg_async import DeadlineExceededError, PooledReads, bounded, conninfo
from strongroom.db.tables import counters
from strongroom.db.work import DatabaseWork
from strongroom.errors import ServiceUnavailableError


def _postgres(database: Database) -> Database:
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL's network round trips; SQLite work runs inline")
    return database


async def _own_connection(database: Database) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection of its own to the test database, made with no statement
    timeout: only a client-side deadline ends its statements."""
    return await psycopg.AsyncConnection.connect(conninfo(database.engine.url), autocommit=True)


def test_work_past_its_deadline_answers_503_and_never_commits(database: Database) -> None:
    work = DatabaseWork(in_threads=True, timeout=0.2)
    answered = threading.Event()
    finished = threading.Event()

    def slow_write() -> None:
        try:
            with database.write() as connection:
                connection.execute(counters.insert().values(name="late", value=1))
                answered.wait(10)  # the database "answers" only after the caller gave up
        finally:
            finished.set()

    with pytest.raises(ServiceUnavailableError):
        asyncio.run(work.run(slow_write))
    answered.set()
    assert finished.wait(10)
    with database.read() as connection:
        late = connection.execute(
            select(func.count()).select_from(counters).where(counters.c.name == "late")
        ).scalar_one()
    assert late == 0  # rolled back: the request that asked for it answered 503
    work.close()


def test_work_inline_runs_on_the_callers_thread(database: Database) -> None:
    work = DatabaseWork(in_threads=False, timeout=0.2)
    assert asyncio.run(work.run(threading.current_thread)) is threading.current_thread()


def test_a_statement_past_its_deadline_is_cut_off_not_cancelled(database: Database) -> None:
    postgres = _postgres(database)

    async def scenario() -> None:
        connection = await _own_connection(postgres)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await bounded(connection, lambda: connection.execute("select pg_sleep(30)"), started)
        assert connection.broken or connection.closed  # severed: never used again
        await connection.close()

    asyncio.run(scenario())


def test_a_cancelled_caller_severs_its_connection(database: Database) -> None:
    postgres = _postgres(database)

    async def scenario() -> None:
        connection = await _own_connection(postgres)
        ended = asyncio.Event()
        caller = asyncio.ensure_future(
            bounded(
                connection,
                lambda: connection.execute("select pg_sleep(30)"),
                time.monotonic() + 60,
                abandoned=ended.set,
            )
        )
        await asyncio.sleep(0.2)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(ended.wait(), 10)  # the statement ended at once, severed
        assert connection.broken or connection.closed
        await connection.close()

    asyncio.run(scenario())


def test_pooled_reads_answer_503_past_the_deadline_and_go_on(database: Database) -> None:
    postgres = _postgres(database)

    async def scenario() -> None:
        reads = PooledReads(postgres.engine.url, timeout=0.3, purpose="test read")
        with pytest.raises(ServiceUnavailableError):
            await reads.rows("select pg_sleep(30)")
        assert await reads.rows("select 1") == [(1,)]
        await reads.aclose()

    asyncio.run(scenario())


def test_an_idle_connection_dropped_by_the_server_is_replaced_before_use(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres = _postgres(database)
    bounded_database = Database.from_url(
        postgres.engine.url.render_as_string(hide_password=False), timeout=5
    )
    try:
        with bounded_database.read() as connection:
            connection.execute(text("select 1"))
        # A restart or failover while the pooled connection sat idle.
        with postgres.engine.connect() as connection:
            connection.execute(
                text(
                    "select pg_terminate_backend(pid, 5000) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()"
                )
            )
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        with bounded_database.read() as connection:
            assert connection.execute(text("select 1")).scalar_one() == 1
    finally:
        bounded_database.dispose()
