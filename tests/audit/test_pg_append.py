"""PostgreSQL's asynchronous group commits (audit/pg_append.py, through AuditWriter): several
batches at once, each on a writer of its own, chains that verify, and fail closed when the
head is not the one the process expected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from strongroom.audit.event import AuditEvent
from strongroom.audit.pg_append import IdReserve
from strongroom.audit.writer import AuditWriter
from strongroom.db.engine import Database
from strongroom.errors import ServiceUnavailableError
from tests.audit.test_journal import event
from tests.support.audit_chain import TEST_CHAIN_KEY, anchored, verify


@pytest.fixture
def store(database_url: str) -> Iterator[Database]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    database = Database.from_url(database_url, timeout=5.0)
    yield anchored(database)
    database.dispose()


def async_writer(database: Database, in_flight: int = 3) -> AuditWriter:
    return AuditWriter(database, TEST_CHAIN_KEY, timeout=5.0, batches_in_flight=in_flight)


def test_batches_run_at_once_on_writers_of_their_own_and_verify(store: Database) -> None:
    writer = async_writer(store)
    events = [event(number) for number in range(1, 61)]

    async def scenario() -> None:
        # Requests arrive over several loop passes while earlier batches are in flight.
        tasks = []
        for chunk in range(6):
            tasks += [
                asyncio.ensure_future(writer.write(e)) for e in events[chunk * 10 : chunk * 10 + 10]
            ]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        await writer.drain()

    asyncio.run(scenario())
    assert all(e.written for e in events)
    with store.read() as connection:
        stored = connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        writers = connection.execute(
            text("SELECT count(DISTINCT writer) FROM audit_events")
        ).scalar_one()
    assert stored == 60
    assert 1 < writers <= 3  # batches overlapped, each on its own writer, no more than allowed
    result = verify(store)
    assert result.broken is None
    assert result.checked == 60
    assert result.open_writers == 0  # drain closed them


def test_a_head_moved_behind_the_process_fails_the_batch_closed_and_is_read_back(
    store: Database,
) -> None:
    """An attacker (or a bug) moves the writer's head: the batch computed from the head the
    process knew is refused (503, nothing stored), and the next batch links to the head as
    the database holds it."""
    writer = async_writer(store, in_flight=1)

    async def scenario() -> tuple[AuditEvent, AuditEvent, AuditEvent]:
        first, second, third = event(1), event(2), event(3)
        await writer.write(first)
        with store.write() as connection:
            connection.execute(
                text("UPDATE audit_heads SET seq = seq + 0, hash = repeat('f', 64) WHERE id > 1")
            )
        with pytest.raises(ServiceUnavailableError):
            await writer.write(second)
        with store.write() as connection:  # put it back, as it was
            connection.execute(
                text(
                    "UPDATE audit_heads SET hash = (SELECT hash FROM audit_events WHERE seq = "
                    "(SELECT max(seq) FROM audit_events)) WHERE id > 1 AND NOT closed"
                )
            )
        await writer.write(third)
        await writer.drain()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert (first.written, second.written, third.written) == (True, False, True)
    with store.read() as connection:
        ids = connection.execute(text("SELECT request_id FROM audit_events ORDER BY seq")).all()
    assert [r[0] for r in ids] == [first.request_id, third.request_id]
    assert verify(store).broken is None


def test_a_database_that_refuses_fails_every_request_of_the_batch_closed(store: Database) -> None:
    writer = async_writer(store)
    with store.write() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))

    async def scenario() -> list[BaseException | None]:
        try:
            results = await asyncio.gather(
                *(writer.write(event(n)) for n in range(1, 5)), return_exceptions=True
            )
        finally:
            await writer.drain()
        return list(results)

    results = asyncio.run(scenario())
    assert all(isinstance(r, ServiceUnavailableError) for r in results)


def test_the_id_reserve_hands_out_young_ids_in_order_and_never_twice() -> None:
    """Ids drawn ahead are used in order, each once; ones older than the bound are dropped, so
    an event's global id is never much older than the event."""
    reserve = IdReserve(max_age=1.0)
    assert reserve.take(1, now=0.0) is None  # empty: draw
    reserve.add([12, 10, 11, 13], now=0.0)
    assert reserve.take(2, now=0.1) == [10, 11]
    assert reserve.take(3, now=0.2) is None  # short: nothing taken
    assert reserve.take(2, now=0.3) == [12, 13]
    reserve.add([20, 21], now=0.4)
    assert reserve.take(1, now=1.5) is None  # drawn 1.1 s ago: dropped
    reserve.add([30], now=1.6)
    assert reserve.take(1, now=1.7) == [30]


def test_a_batch_after_the_first_is_one_round_trip(store: Database) -> None:
    """The ids of a batch come from the reserve its predecessor's statement refilled: after the
    first batch, the sequence is drawn only by the append statement itself."""
    writer = async_writer(store, in_flight=1)

    async def scenario() -> None:
        await writer.write(event(1))  # draws the reserve (one extra round trip)
        with store.read() as connection:
            before = connection.execute(
                text("SELECT last_value FROM audit_events_seq")
            ).scalar_one()
        for number in range(2, 6):
            await writer.write(event(number))
        with store.read() as connection:
            after = connection.execute(text("SELECT last_value FROM audit_events_seq")).scalar_one()
            seqs = connection.execute(text("SELECT seq FROM audit_events ORDER BY seq")).scalars()
            stored = list(seqs)
        await writer.drain()
        # Each batch drew exactly what it used: the reserve kept its size.
        assert after - before == 4
        assert len(set(stored)) == 5

    asyncio.run(scenario())
    assert verify(store).broken is None
