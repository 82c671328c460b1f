"""The database edges the hot paths rely on: the writer queue, the audit hand-off when the
writer lock is busy, and the hot reader's reconnect."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter
from strongroom.db.engine import Database, WriterBusyError
from strongroom.db.hot import hot_reads
from strongroom.db.tables import audit_events
from tests.support.audit_chain import TEST_CHAIN_KEY, anchored, verify
from tests.support.concurrency import HeldLock
from tests.support.databases import sqlite_copy


@pytest.fixture
def sqlite_database(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(sqlite_copy(sqlite_template, tmp_path / "w.db"))
    yield database
    database.dispose()


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        time=datetime.now(UTC), request_id=f"r{n}", source_ip="127.0.0.1", action="test"
    )


def test_non_blocking_write_refuses_while_another_writer_holds_the_turn(
    sqlite_database: Database,
) -> None:
    database = sqlite_database
    with HeldLock(database), pytest.raises(WriterBusyError), database.write(blocking=False):
        pass
    with database.write(blocking=False) as connection:
        connection.execute(text("select 1"))


def test_audit_batch_is_handed_to_a_thread_when_the_lock_is_busy(
    sqlite_database: Database,
) -> None:
    """The event loop must not wait for another writer: the batch finishes in a thread."""
    database = sqlite_database
    writer = AuditWriter(anchored(database), TEST_CHAIN_KEY)
    holding = threading.Event()

    def hold_for(seconds: float) -> None:
        with database.write():
            holding.set()
            time.sleep(seconds)

    async def scenario() -> float:
        holder = threading.Thread(target=hold_for, args=(0.3,))
        holder.start()
        holding.wait(5)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await asyncio.gather(*(writer.write(_event(i)) for i in range(5)))
        elapsed = time.perf_counter() - started
        tick_task.cancel()
        holder.join()
        # The loop kept running while the batch waited for the lock (it was not blocked).
        assert ticks >= 10
        return elapsed

    assert asyncio.run(scenario()) >= 0.2
    with database.read() as connection:
        assert connection.execute(select(func.count()).select_from(audit_events)).scalar() == 5
    assert verify(database).broken is None


def test_hot_reader_reconnects_after_losing_its_connection(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("a connection to a local SQLite file does not drop")

    async def scenario() -> None:
        hot = hot_reads(database.engine, timeout=5)
        assert await hot.generation() == 0
        # A server restart or failover, as the hot reader sees it: every backend of its pool
        # is gone.
        with database.engine.connect() as connection:
            connection.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()"
                )
            )
        assert await hot.generation() == 0
        assert await hot.version_row("/missing", None) is None
        await hot.aclose()

    asyncio.run(scenario())


def test_a_snapshot_sees_one_state_and_can_write_nothing(database: Database) -> None:
    """What `strongroom audit verify` reads through: events appended meanwhile must not
    appear halfway through its walk (a false break), and it must not change anything."""
    writer = AuditWriter(anchored(database), TEST_CHAIN_KEY)

    def count(connection: Any) -> int:
        return int(connection.execute(select(func.count()).select_from(audit_events)).scalar())

    with database.snapshot() as connection:
        before = count(connection)
        with database.write() as other:
            writer.append(other, [_event(1), _event(2)])
        assert count(connection) == before  # committed meanwhile, not in this snapshot
    with database.snapshot() as connection:
        assert count(connection) == before + 2
    with pytest.raises(Exception) as refused, database.snapshot() as connection:  # noqa: PT011
        connection.execute(text("DELETE FROM audit_events"))
    # SQLite (query_only): "attempt to write a readonly database", as a 503; PostgreSQL:
    # "cannot execute DELETE in a read-only transaction".
    said = getattr(refused.value, "reason", None) or str(refused.value)
    assert "readonly" in said or "read-only" in said, said
    with database.snapshot() as connection:
        assert count(connection) == before + 2
