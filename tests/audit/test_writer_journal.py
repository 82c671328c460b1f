"""AuditWriter with a journal (SQLite in a server): reads are answered once their events are
journaled, never waiting for the SQLite write lock, and every event reaches the chain."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from strongroom.audit import writer as writer_module
from strongroom.audit.journal import AuditJournal, journal_directory, recover_orphans
from strongroom.audit.writer import AuditFileSink, AuditWriter
from strongroom.db.engine import Database
from strongroom.errors import ServiceUnavailableError
from tests.audit.test_journal import chained_request_ids, event, progress_rows
from tests.support.audit_chain import TEST_CHAIN_KEY, verify
from tests.support.concurrency import HeldLock


def audit_table(database: Database, *, present: bool) -> None:
    """Take the chain's table away (every move fails, as with a broken database) or back."""
    names = (
        ("audit_events_gone", "audit_events") if present else ("audit_events", "audit_events_gone")
    )
    with database.write() as connection:
        connection.execute(text(f"ALTER TABLE {names[0]} RENAME TO {names[1]}"))


def journal_of(writer: AuditWriter) -> AuditJournal:
    journal = writer.journal
    assert journal is not None
    return journal


def journaled_writer(database: Database, sink: AuditFileSink | None = None) -> AuditWriter:
    directory = journal_directory(database)
    assert directory is not None
    return AuditWriter(database, TEST_CHAIN_KEY, sink, journal=AuditJournal.create(directory))


def recorded_moves(writer: AuditWriter, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """The writer's moves into the chain as they happen: (events, in a thread)."""
    moves: list[tuple[int, bool]] = []
    move_batch = writer._move_batch

    def recorded(*args: Any, blocking: bool) -> None:
        move_batch(*args, blocking=blocking)
        moves.append((len(args[1]), blocking))

    monkeypatch.setattr(writer, "_move_batch", recorded)
    return moves


def test_reads_are_answered_while_another_writer_holds_the_lock(database: Database) -> None:
    writer = journaled_writer(database)

    async def scenario() -> list[str]:
        with HeldLock(database):
            # Would wait for the lock without the journal: here it is answered at once.
            await asyncio.wait_for(
                asyncio.gather(*(writer.write(event(n)) for n in range(1, 6))), 2
            )
            await asyncio.sleep(0.05)  # the move is due, and waits for the lock in a thread
            assert chained_request_ids(database) == []
        await writer.drain_journal()
        chained = chained_request_ids(database)
        await writer.drain()
        return chained

    assert asyncio.run(scenario()) == [f"req-{n:04d}" for n in range(1, 6)]
    assert verify(database).broken is None


def test_events_of_one_loop_pass_share_one_journal_write(database: Database) -> None:
    writer = journaled_writer(database)
    journal = journal_of(writer)

    async def scenario() -> tuple[int, int]:
        await asyncio.gather(*(writer.write(event(n)) for n in range(8)))
        size_after_batch = journal.size
        await writer.drain_journal()
        moved = progress_rows(database)[journal.name]
        await writer.drain()
        return size_after_batch, moved

    size, moved = asyncio.run(scenario())
    assert size == moved > 0
    assert not journal.path.exists()  # all chained at stop: removed


def test_a_journal_that_cannot_be_written_fails_the_requests_closed(database: Database) -> None:
    writer = journaled_writer(database)
    journal = journal_of(writer)
    read_only = os.open(journal.path, os.O_RDONLY)
    os.dup2(read_only, journal._descriptor)
    os.close(read_only)

    async def scenario() -> None:
        with pytest.raises(ServiceUnavailableError):
            await writer.write(event(1))
        await writer.drain()

    asyncio.run(scenario())
    assert chained_request_ids(database) == []


def test_a_failed_move_is_retried_and_loses_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MOVE_RETRY_SECONDS", 0.05)
    writer = journaled_writer(database)
    audit_table(database, present=False)

    async def scenario() -> None:
        await writer.write(event(1))  # answered: the event is durable in the journal
        await asyncio.sleep(0.1)  # the move failed at least once
        audit_table(database, present=True)
        for _ in range(100):
            if chained_request_ids(database):
                break
            await asyncio.sleep(0.02)
        await writer.drain()

    asyncio.run(scenario())
    assert chained_request_ids(database) == ["req-0001"]


def test_what_could_not_be_chained_at_stop_is_chained_at_the_next_start(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "MOVE_RETRY_SECONDS", 0.05)
    writer = journaled_writer(database)
    journal = journal_of(writer)
    audit_table(database, present=False)

    async def scenario() -> None:
        await writer.write(event(1))
        await asyncio.sleep(0.02)
        await writer.drain()

    asyncio.run(scenario())
    assert journal.path.exists()  # kept: its event is not in the chain
    audit_table(database, present=True)
    assert recover_orphans(database, TEST_CHAIN_KEY, journal.directory).events == 1
    assert chained_request_ids(database) == ["req-0001"]


def test_a_large_journal_is_replaced_once_chained(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "ROTATE_BYTES", 1000)
    writer = journaled_writer(database)
    first = journal_of(writer)

    async def scenario() -> None:
        for n in range(10):
            await writer.write(event(n))
            await writer.drain_journal()
        await writer.drain()

    asyncio.run(scenario())
    assert not first.path.exists()
    assert chained_request_ids(database) == [f"req-{n:04d}" for n in range(10)]
    # Replaced journals' rows went with a later move; the last one's goes at the next start.
    assert len(progress_rows(database)) == 1
    assert list(first.directory.iterdir()) == []
    recover_orphans(database, TEST_CHAIN_KEY, first.directory)
    assert progress_rows(database) == {}


def test_the_audit_file_copy_is_written_with_the_journal(
    database: Database, tmp_path: Path
) -> None:
    sink = AuditFileSink(tmp_path / "audit.jsonl")
    writer = journaled_writer(database, sink)

    async def scenario() -> bytes:
        with HeldLock(database):
            await writer.write(event(1))
            copied = (tmp_path / "audit.jsonl").read_bytes()
        await writer.drain()
        return copied

    assert b"req-0001" in asyncio.run(scenario())


def test_a_backlog_moves_in_a_thread_in_bounded_transactions_of_whole_writes(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long-held lock, the events journaled meanwhile must not be chained in one long
    transaction on the event loop: that would stall every request of the process."""
    monkeypatch.setattr(writer_module, "MOVE_MAX_EVENTS", 3)
    monkeypatch.setattr(writer_module, "MOVE_ON_LOOP_MAX_EVENTS", 1)
    writer = journaled_writer(database)
    moves = recorded_moves(writer, monkeypatch)

    async def scenario() -> None:
        await writer.write(event(0))
        await writer.drain_journal()  # lock free, one event: on the loop
        with HeldLock(database):
            for write in range(5):  # five journal writes of two events each
                await asyncio.gather(
                    writer.write(event(2 * write + 1)), writer.write(event(2 * write + 2))
                )
        await writer.drain_journal()
        await writer.drain()

    asyncio.run(scenario())
    assert moves[0] == (1, False)
    assert all(blocking for _, blocking in moves[1:])  # in a thread: none of them on the loop
    assert [size for size, _ in moves[1:]] == [2, 2, 2, 2, 2]  # whole writes, at most 3 events
    assert chained_request_ids(database) == [f"req-{n:04d}" for n in range(11)]
    assert verify(database).broken is None


def test_a_move_gathers_events_for_a_while_but_a_full_one_goes_at_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One move per read would cost the loop a transaction per read; a move that waits for
    MOVE_DELAY_SECONDS once it is full would only grow and leave the loop for a thread."""
    monkeypatch.setattr(writer_module, "MOVE_DELAY_SECONDS", 0.2)
    monkeypatch.setattr(writer_module, "MOVE_ON_LOOP_MAX_EVENTS", 8)
    writer = journaled_writer(database)
    moves = recorded_moves(writer, monkeypatch)

    async def scenario() -> None:
        for n in range(3):  # three passes of the loop, one journal write each
            await writer.write(event(n))
            await asyncio.sleep(0.01)
        assert moves == []  # still gathering
        await asyncio.sleep(0.3)
        assert moves == [(3, False)]  # one move for the three, on the loop
        await asyncio.gather(*(writer.write(event(n)) for n in range(10, 18)))  # a full move
        await asyncio.sleep(0.02)  # far less than the delay
        assert moves == [(3, False), (8, False)]
        await writer.drain()

    asyncio.run(scenario())
    assert chained_request_ids(database) == [f"req-{n:04d}" for n in (0, 1, 2, *range(10, 18))]


def test_with_the_lock_free_more_than_a_loop_move_holds_is_moved_on_the_loop_in_turns(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread would hold the GIL against the loop for as long: with the lock free, events
    beyond one loop move's worth wait for the next loop move, whole writes at a time."""
    monkeypatch.setattr(writer_module, "MOVE_DELAY_SECONDS", 0.2)
    monkeypatch.setattr(writer_module, "MOVE_ON_LOOP_MAX_EVENTS", 4)
    writer = journaled_writer(database)
    moves = recorded_moves(writer, monkeypatch)

    async def scenario() -> None:
        for write in range(2):  # two journal writes of three events: six, over the four
            await asyncio.gather(*(writer.write(event(3 * write + n)) for n in range(3)))
        await asyncio.sleep(0.05)  # far less than the delay: the second write started it
        assert moves == [(3, False), (3, False)]
        await writer.drain()

    asyncio.run(scenario())
    assert chained_request_ids(database) == [f"req-{n:04d}" for n in range(6)]


def test_a_process_s_journal_and_its_chain_go_together_and_its_chain_closes_at_its_end(
    database: Database,
) -> None:
    """A server process's journaled events go into its own chain, which the registry names
    after the process and its journal, and which its shutdown closes where it ends."""
    writer = journaled_writer(database)
    journal = journal_of(writer)

    async def scenario() -> None:
        await asyncio.gather(*(writer.write(event(n)) for n in range(1, 4)))
        await writer.drain_journal()
        await writer.drain()

    asyncio.run(scenario())
    with database.read() as connection:
        entries = connection.execute(
            text("SELECT kind, label, end_seq FROM audit_registry ORDER BY seq")
        ).all()
    assert [(kind, end) for kind, _label, end in entries] == [
        ("legacy", 0),
        ("open", None),
        ("close", 3),
    ]
    assert (
        entries[1].label == f"pid {os.getpid()} on {socket.gethostname()}, journal {journal.name}"
    )
    result = verify(database)
    assert (result.broken, result.checked, result.writers, result.open_writers) == (None, 3, 2, 0)
