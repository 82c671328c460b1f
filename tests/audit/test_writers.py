"""Chains per writer (audit/chain.py, audit/store.py), on SQLite and PostgreSQL: every process
appends to writers of its own, verification checks each of them and the registry that ties
them together, and appends of different processes never wait for each other.

An ``Appender`` stands for one process here. The attacker writes to the database with SQL and
does not hold the chain key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from strongroom.audit.chain import GENESIS_HASH
from strongroom.audit.store import LEGACY_WRITER, Appender, seal_anchor
from strongroom.audit.verification import NOT_ANCHORED
from strongroom.db import migrate
from strongroom.db.engine import Database
from tests.audit.test_journal import event
from tests.e2e.test_audit_chain import schema_at
from tests.support.audit_chain import (
    TEST_CHAIN_KEY,
    verify,
    write_chain_of_revision_0003,
)
from tests.support.concurrency import run_at_once


def execute(database: Database, statement: str, **params: Any) -> list[Any]:
    with database.write() as connection:
        result = connection.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def one(database: Database, statement: str, **params: Any) -> Any:
    with database.read() as connection:
        return connection.execute(text(statement), params).scalar_one()


@dataclass
class TwoProcesses:
    """Processes A and B, three events each, appended turn by turn (one per transaction):
    events 1, 3, 5 are A's, 2, 4, 6 B's. Both writers are still open."""

    database: Database
    a: Appender
    b: Appender
    writer_a: int
    writer_b: int

    def hash_of(self, seq: int) -> str:
        return str(one(self.database, "SELECT hash FROM audit_events WHERE seq = :s", s=seq))


@pytest.fixture
def two(store: Database) -> TwoProcesses:
    a, b = Appender(TEST_CHAIN_KEY, "process A"), Appender(TEST_CHAIN_KEY, "process B")
    for number in range(1, 7):
        with store.write() as connection:
            (a if number % 2 else b).append(connection, [event(number)])
    return TwoProcesses(store, a, b, a.writers[0], b.writers[0])


def test_each_process_appends_to_a_writer_of_its_own(two: TwoProcesses) -> None:
    assert two.writer_a != two.writer_b
    rows = execute(two.database, "SELECT seq, writer, writer_seq FROM audit_events ORDER BY seq")
    assert [tuple(r) for r in rows] == [
        (1, two.writer_a, 1),
        (2, two.writer_b, 1),
        (3, two.writer_a, 2),
        (4, two.writer_b, 2),
        (5, two.writer_a, 3),
        (6, two.writer_b, 3),
    ]
    labels = execute(two.database, "SELECT kind, label FROM audit_registry ORDER BY seq")
    assert [tuple(r) for r in labels] == [
        ("legacy", None),
        ("open", "process A"),
        ("open", "process B"),
    ]
    result = verify(two.database)
    assert (result.broken, result.checked, result.writers, result.open_writers) == (None, 6, 3, 2)

    assert two.a.close(two.database) == 1
    assert two.a.close(two.database) == 0  # nothing left to close
    result = verify(two.database)
    assert (result.broken, result.open_writers, result.entries) == (None, 1, 4)
    # After its close, a process that appends again opens a new writer.
    with two.database.write() as connection:
        two.a.append(connection, [event(7)])
    assert two.a.writers[0] not in (two.writer_a, two.writer_b)
    assert verify(two.database).broken is None


# -- what an attacker with the database alone tries, writer by writer ----------------------


def _swap_positions(two: TwoProcesses, c: Connection) -> None:
    """A's first two events change places, the previous-hash links fixed up to match."""
    first_prev = str(
        c.execute(text("SELECT prev_hash FROM audit_events WHERE seq = 1")).scalar_one()
    )
    c.execute(text("UPDATE audit_events SET writer_seq = -1 WHERE seq = 1"))
    c.execute(
        text("UPDATE audit_events SET writer_seq = 1, prev_hash = :p WHERE seq = 3"),
        {"p": first_prev},
    )
    c.execute(
        text("UPDATE audit_events SET writer_seq = 2, prev_hash = :p WHERE seq = 1"),
        {"p": two.hash_of(3)},
    )
    c.execute(text("UPDATE audit_events SET prev_hash = :p WHERE seq = 5"), {"p": two.hash_of(1)})


def _move_to_other_writer(two: TwoProcesses, c: Connection) -> None:
    """B's newest event becomes A's fourth, both heads adjusted: as if A had done it."""
    c.execute(
        text("UPDATE audit_events SET writer = :a, writer_seq = 4, prev_hash = :p WHERE seq = 6"),
        {"a": two.writer_a, "p": two.hash_of(5)},
    )
    c.execute(
        text("UPDATE audit_heads SET seq = 4, hash = :h WHERE id = :a"),
        {"a": two.writer_a, "h": two.hash_of(6)},
    )
    c.execute(
        text("UPDATE audit_heads SET seq = 2, hash = :h WHERE id = :b"),
        {"b": two.writer_b, "h": two.hash_of(4)},
    )


def _swap_ids(two: TwoProcesses, c: Connection) -> None:
    """The global ids of A's and B's first events swapped: the listing order changes."""
    c.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 1"))
    c.execute(text("UPDATE audit_events SET seq = 1 WHERE seq = 2"))
    c.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = -1"))


def _unknown_writer(two: TwoProcesses, c: Connection) -> None:
    """An event copied into a writer the registry never opened, with a head of its own."""
    c.execute(
        text(
            "INSERT INTO audit_events (seq, writer, writer_seq, time, request_id, source_ip, "
            "action, status, outcome, prev_hash, hash) SELECT 100, 12345, 1, time, request_id, "
            "source_ip, action, status, outcome, :g, hash FROM audit_events WHERE seq = 6"
        ),
        {"g": GENESIS_HASH},
    )


def _forged_head(two: TwoProcesses, c: Connection) -> None:
    c.execute(
        text("INSERT INTO audit_heads (id, seq, hash, closed) VALUES (12345, 0, :g, false)"),
        {"g": GENESIS_HASH},
    )


def _delete_writer(two: TwoProcesses, c: Connection) -> None:
    """Everything A ever did: its events and its head."""
    c.execute(text("DELETE FROM audit_events WHERE writer = :a"), {"a": two.writer_a})
    c.execute(text("DELETE FROM audit_heads WHERE id = :a"), {"a": two.writer_a})


def _delete_writer_and_its_registration(two: TwoProcesses, c: Connection) -> None:
    """As above, and its registry entry too (B's was added after it)."""
    _delete_writer(two, c)
    c.execute(text("DELETE FROM audit_registry WHERE writer = :a"), {"a": two.writer_a})


def _truncate_closed_writer(two: TwoProcesses, c: Connection) -> None:
    """A's newest event deleted, its head set back: A was closed, its close entry says where
    it ends."""
    c.execute(text("DELETE FROM audit_events WHERE seq = 5"))
    c.execute(
        text("UPDATE audit_heads SET seq = 2, hash = :h WHERE id = :a"),
        {"a": two.writer_a, "h": two.hash_of(3)},
    )


def _reopen_closed_writer(two: TwoProcesses, c: Connection) -> None:
    c.execute(text("UPDATE audit_heads SET closed = false WHERE id = :a"), {"a": two.writer_a})


@pytest.mark.parametrize(
    ("attack", "close_a", "problem", "where"),
    [
        (
            lambda t, c: c.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = 4")),
            False,
            "does not match its link",
            (4, "b"),
        ),
        (
            lambda t, c: c.execute(text("DELETE FROM audit_events WHERE seq = 3")),
            False,
            "sequence gap",
            (5, "a"),
        ),
        (
            lambda t, c: c.execute(text("DELETE FROM audit_events WHERE seq = 6")),
            False,
            "missing at the end",
            (4, "b"),
        ),
        (_swap_positions, False, "does not match its link", (3, "a")),
        (_move_to_other_writer, False, "does not match its link", (6, "a")),
        (_swap_ids, False, "does not match its link", None),  # whichever writer comes first
        (_unknown_writer, False, "which is not registered", (100, None)),
        (_forged_head, False, "has a head but is not registered", (0, None)),
        (_delete_writer, False, "head of writer", (0, "a")),
        (_delete_writer_and_its_registration, False, "registry entry", (0, None)),
        (_truncate_closed_writer, True, "moved after the registry closed it", (0, "a")),
        (_reopen_closed_writer, True, "marked open against the registry", (0, "a")),
    ],
    ids=[
        "event-altered",
        "event-deleted",
        "newest-event-deleted",
        "events-reordered",
        "event-moved-to-another-writer",
        "event-ids-swapped",
        "unregistered-writer",
        "forged-head",
        "writer-deleted",
        "writer-deleted-with-its-registration",
        "closed-writer-truncated",
        "closed-writer-reopened",
    ],
)
def test_each_way_of_rewriting_a_writers_chain_is_reported(
    two: TwoProcesses,
    attack: Callable[[TwoProcesses, Connection], object],
    close_a: bool,
    problem: str,
    where: tuple[int, str | None] | None,
) -> None:
    if close_a:
        two.a.close(two.database)
    assert verify(two.database).broken is None
    with two.database.write() as connection:
        attack(two, connection)
    broken = verify(two.database).broken
    assert broken is not None
    assert problem in broken.problem
    if where is None:
        return
    seq, writer = where
    assert broken.seq == seq
    if writer is not None:
        assert broken.writer == (two.writer_a if writer == "a" else two.writer_b)


def test_tails_go_unnoticed_only_where_the_chain_docstring_says(two: TwoProcesses) -> None:
    """What audit/chain.py says verification cannot detect, and nothing more: the newest
    events of an open writer deleted with its head set back, and the newest registry entries
    deleted with the registry's head set back (here: B's registration, and with it all of B).
    The single chain of older versions could not tell either (its newest events, its head
    set back). A copy of the trail kept elsewhere (AUDIT_FILE) shows them."""
    database = two.database
    execute(database, "DELETE FROM audit_events WHERE seq = 6")
    execute(
        database,
        "UPDATE audit_heads SET seq = 2, hash = :h WHERE id = :b",
        b=two.writer_b,
        h=two.hash_of(4),
    )
    assert verify(database).broken is None
    newest = one(database, "SELECT max(seq) FROM audit_registry")
    before = one(database, "SELECT hash FROM audit_registry WHERE seq = :s", s=newest - 1)
    execute(database, "DELETE FROM audit_events WHERE writer = :b", b=two.writer_b)
    execute(database, "DELETE FROM audit_heads WHERE id = :b", b=two.writer_b)
    execute(database, "DELETE FROM audit_registry WHERE seq = :s", s=newest)
    execute(
        database, "UPDATE audit_heads SET seq = :s, hash = :h WHERE id = 0", s=newest - 1, h=before
    )
    assert verify(database).broken is None
    # A registration older than the newest entry is held by the entries after it.
    with database.write() as connection:
        Appender(TEST_CHAIN_KEY, "process C").append(connection, [event(7)])
    execute(database, "DELETE FROM audit_events WHERE writer = :a", a=two.writer_a)
    execute(database, "DELETE FROM audit_heads WHERE id = :a", a=two.writer_a)
    execute(database, "DELETE FROM audit_registry WHERE writer = :a", a=two.writer_a)
    broken = verify(database).broken
    assert broken is not None
    assert broken.problem.startswith("registry entry")


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_writers_produce_chains_that_verify_and_verify_never_breaks_meanwhile(
    store: Database,
) -> None:
    """Three processes, two threads each (so one process's transactions overlap too), each
    thread appending in transactions of its own, while verification runs again and again in
    snapshots of its own: every snapshot verifies, and so does the end."""
    processes = [Appender(TEST_CHAIN_KEY, f"process {n}") for n in range(3)]
    done = threading.Event()
    reports: list[Any] = []

    def verifier() -> None:
        while not done.is_set():
            reports.append(verify(store))

    checking = threading.Thread(target=verifier)
    checking.start()
    try:
        counter = iter(range(10_000))
        lock = threading.Lock()

        def appends(appender: Appender) -> Callable[[], None]:
            def run() -> None:
                for round_ in range(12):
                    with lock:
                        batch = [event(next(counter)) for _ in range(1 + round_ % 3)]
                    with store.write() as connection:
                        appender.append(connection, batch)

            return run

        threads = [
            threading.Thread(target=appends(appender)) for appender in processes for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        done.set()
        checking.join()
    assert reports
    assert [r.broken for r in reports if r.broken is not None] == []
    final = verify(store)
    assert final.broken is None
    assert final.checked == one(store, "SELECT count(*) FROM audit_events") == 6 * 24
    assert final.writers >= 1 + 3  # the legacy chain, and at least one per process


def test_an_append_never_waits_for_another_transaction_s_append(
    store: Database, database_url: str
) -> None:
    """PostgreSQL: while one transaction holds its writer (appended, not committed yet),
    another process's append, and another transaction of the same process, go ahead: each
    with a lock timeout that the single chain's head lock would have run into."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite takes one write transaction at a time, whatever the chains")
    a, b = Appender(TEST_CHAIN_KEY, "process A"), Appender(TEST_CHAIN_KEY, "process B")
    for appender in (a, b):  # both opened their writer already
        with store.write() as connection:
            appender.append(connection, [event(0)])
    with store.write() as holding:
        a.append(holding, [event(1)])
        for other in (b, a):
            with store.write() as connection:
                connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                other.append(connection, [event(2)])
    assert len(a.writers) == 2  # the second transaction of A opened a writer of its own
    result = verify(store)
    assert (result.broken, result.checked) == (None, 5)


def test_processes_opening_writers_at_once_all_get_one(store: Database) -> None:
    appenders = [Appender(TEST_CHAIN_KEY, f"p{n}") for n in range(4)]
    turn = iter(appenders)
    lock = threading.Lock()

    def first_append() -> None:
        with lock:
            appender = next(turn)
        with store.write() as connection:
            appender.append(connection, [event(1)])

    assert run_at_once(first_append, 4) == []
    assert len({a.writers[0] for a in appenders}) == 4
    assert verify(store).broken is None


# -- the single chain of revision 0003 -----------------------------------------------------


def test_a_chain_of_revision_0003_becomes_writer_1_and_keeps_verifying(
    database_url: str, tmp_path: Path
) -> None:
    """The keyed single chain as revision 0003 left it (sealed anchor, keyed links, its head)
    is kept by the upgrade as writer 1: verified as before, closed at its head by the first
    start, and protected like any closed writer from then on."""
    schema_at(database_url, "0003")
    database = Database.from_url(database_url)
    try:
        write_chain_of_revision_0003(
            database,
            TEST_CHAIN_KEY,
            [event(n) for n in range(1, 5)],
            sealed_at="2026-12-02T10:00:00.000000Z",
        )
        migrate.upgrade(database)
        assert one(database, "SELECT count(*) FROM audit_events WHERE writer = 1") == 4
        broken = verify(database).broken
        assert broken is not None
        assert broken.problem == NOT_ANCHORED  # until a server starts with the key
        seal_anchor(database, TEST_CHAIN_KEY)
        result = verify(database)
        assert (result.broken, result.checked, result.writers, result.open_writers) == (
            None,
            4,
            1,
            0,
        )
        with database.write() as connection:
            Appender(TEST_CHAIN_KEY).append(connection, [event(5), event(6)])
        result = verify(database)
        assert (result.broken, result.checked, result.writers) == (None, 6, 2)
        assert one(database, "SELECT min(seq) FROM audit_events WHERE writer <> 1") == 5

        # Its newest event deleted and its head set back: the registry closed it at 4.
        execute(database, "DELETE FROM audit_events WHERE seq = 4")
        execute(
            database,
            "UPDATE audit_heads SET seq = 3, hash = (SELECT hash FROM audit_events "
            "WHERE seq = 3) WHERE id = :w",
            w=LEGACY_WRITER,
        )
        broken = verify(database).broken
        assert broken is not None
        assert broken.problem == "writer 1 moved after the registry closed it"
    finally:
        database.dispose()
