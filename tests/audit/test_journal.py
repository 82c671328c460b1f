"""The audit journal (strongroom.audit.journal): lines, files, locks and crash recovery, on SQLite.

PostgreSQL has no journal (its reads' events commit in a thread): these run on SQLite only.
"""

from __future__ import annotations

import fcntl
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from strongroom.audit.event import AuditEvent
from strongroom.audit.journal import (
    MAX_LINE_BYTES,
    UNREADABLE_SUFFIX,
    AuditJournal,
    JournalLineError,
    decode_event,
    encode_events,
    journal_directory,
    record_progress,
    recover_orphans,
)
from strongroom.audit.store import Appender
from strongroom.db.engine import Database
from strongroom.db.tables import audit_events, audit_journal_progress, audit_registry
from strongroom.errors import ConfigurationError
from tests.support.audit_chain import TEST_CHAIN_KEY, verify
from tests.support.concurrency import run_at_once

T0 = datetime(2026, 11, 28, 4, 30, 0, 123456, tzinfo=UTC)


def event(number: int, **fields: object) -> AuditEvent:
    made = AuditEvent(
        time=T0 + timedelta(milliseconds=number),
        request_id=f"req-{number:04d}",
        source_ip="203.0.113.7",
        action="GET /v1/secrets/app/db",
        path="/app/db",
        access_id="p-abc",
        token_digest="d" * 64,
    )
    made.finish(200)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


@pytest.fixture
def directory(database: Database) -> Path:
    found = journal_directory(database)
    assert found is not None
    return found


def chained_request_ids(database: Database) -> list[str]:
    with database.read() as connection:
        return list(
            connection.execute(select(audit_events.c.request_id).order_by(audit_events.c.seq))
            .scalars()
            .all()
        )


def progress_rows(database: Database) -> dict[str, int]:
    with database.read() as connection:
        rows = connection.execute(select(audit_journal_progress)).all()
    return {row.journal: row.moved_bytes for row in rows}


def write_orphan(directory: Path, events: list[AuditEvent]) -> AuditJournal:
    """A journal as a process that ended would leave it: written, then closed (unlocked)."""
    journal = AuditJournal.create(directory)
    journal.append(encode_events(events))
    journal.close(remove=False)
    return journal


# -- lines ----------------------------------------------------------------------------------


def test_a_line_gives_back_the_event_with_the_same_chain_hash() -> None:
    original = event(1, reason="denied: no rule", status=403, outcome="denied")
    line = encode_events([original])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    decoded = decode_event(line[:-1])
    assert decoded.record() == original.record()
    link = TEST_CHAIN_KEY.link
    assert link("0" * 64, 1, decoded.record()) == link("0" * 64, 1, original.record())
    assert decoded.written  # it is durable: the middleware must not write it again


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (orjson.dumps({**event(1).record(), "request_id": None}), "bad request_id"),
        (orjson.dumps({**event(1).record(), "reason": 7}), "bad reason"),
        (orjson.dumps({**event(1).record(), "status": "200"}), "bad status"),
        (orjson.dumps({**event(1).record(), "status": True}), "bad status"),
        (orjson.dumps({**event(1).record(), "time": "yesterday"}), "bad time"),
        (orjson.dumps({**event(1).record(), "time": "2026-11-28T04:30:00"}), "without a zone"),
        (b'{"a": "' + b"x" * MAX_LINE_BYTES + b'"}', "too long"),
    ],
)
def test_lines_this_code_did_not_write_are_refused(line: bytes, problem: str) -> None:
    with pytest.raises(JournalLineError, match=problem):
        decode_event(line)


# -- the file -------------------------------------------------------------------------------


def test_journal_file_is_private_and_locked_while_open(directory: Path) -> None:
    journal = AuditJournal.create(directory)
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
        assert journal.path.name.startswith(f"{os.getpid()}-")
        other = os.open(journal.path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # what recovery sees: a live journal
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        first = encode_events([event(1)])
        assert journal.append(first) == len(first)
        assert journal.append(encode_events([event(2), event(3)])) == journal.path.stat().st_size
    finally:
        journal.close(remove=True)
    assert not journal.path.exists()


def test_a_journal_directory_others_could_write_is_refused_or_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose.audit-journal"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    AuditJournal.create(loose).close(remove=True)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link.audit-journal"
    link.symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="not a link"):
        AuditJournal.create(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_journal_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.audit-journal"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 4321, 4321)
    with pytest.raises(ConfigurationError, match="another user"):
        AuditJournal.create(foreign)


def test_a_failed_append_raises_and_leaves_no_partial_line(directory: Path) -> None:
    journal = AuditJournal.create(directory)
    journal.append(encode_events([event(1)]))
    size = journal.size
    # A real write error: the descriptor now refers to a read-only handle of the file.
    read_only = os.open(journal.path, os.O_RDONLY)
    os.dup2(read_only, journal._descriptor)
    os.close(read_only)
    with pytest.raises(OSError, match="Bad file descriptor"):
        journal.append(encode_events([event(2)]))
    assert journal.size == size == journal.path.stat().st_size
    journal.close(remove=True)


def test_journals_only_beside_a_sqlite_file(database: Database, directory: Path) -> None:
    assert directory == Path(str(database.engine.url.database) + ".audit-journal")
    postgres = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert journal_directory(postgres) is None


# -- recovery -------------------------------------------------------------------------------


def test_an_orphaned_journal_is_chained_and_deleted(database: Database, directory: Path) -> None:
    orphan = write_orphan(directory, [event(1), event(2), event(3)])
    recovered = recover_orphans(database, TEST_CHAIN_KEY, directory)
    assert (recovered.events, recovered.journals, recovered.unreadable) == (3, 1, 0)
    assert chained_request_ids(database) == ["req-0001", "req-0002", "req-0003"]
    assert not orphan.path.exists()
    assert progress_rows(database) == {}  # swept with the file
    assert verify(database).broken is None
    assert recover_orphans(database, TEST_CHAIN_KEY, directory).events == 0  # nothing twice


def test_recovery_starts_where_the_chain_left_off(database: Database, directory: Path) -> None:
    """A process that chained part of its journal, then died: only the rest is chained."""
    first = encode_events([event(1), event(2)])
    orphan = write_orphan(directory, [event(1), event(2), event(3)])
    with database.write() as connection:
        Appender(TEST_CHAIN_KEY).append(connection, [event(1), event(2)])
        record_progress(connection, orphan.name, len(first))
    assert recover_orphans(database, TEST_CHAIN_KEY, directory).events == 1
    assert chained_request_ids(database) == ["req-0001", "req-0002", "req-0003"]


def test_recovery_after_the_commit_but_before_the_delete_chains_nothing_twice(
    database: Database, directory: Path
) -> None:
    orphan = write_orphan(directory, [event(1)])
    with database.write() as connection:
        Appender(TEST_CHAIN_KEY).append(connection, [event(1)])
        record_progress(connection, orphan.name, orphan.size)
    assert recover_orphans(database, TEST_CHAIN_KEY, directory).events == 0
    assert chained_request_ids(database) == ["req-0001"]
    assert not orphan.path.exists()


def test_a_torn_last_line_is_dropped(database: Database, directory: Path) -> None:
    orphan = write_orphan(directory, [event(1)])
    with orphan.path.open("ab") as handle:
        handle.write(encode_events([event(2)])[:40])  # the process died mid-write
    assert recover_orphans(database, TEST_CHAIN_KEY, directory).events == 1
    assert chained_request_ids(database) == ["req-0001"]


def test_a_bad_line_keeps_the_file_aside_after_chaining_what_came_before(
    database: Database, directory: Path
) -> None:
    orphan = write_orphan(directory, [event(1)])
    with orphan.path.open("ab") as handle:
        handle.write(b'{"request_id": "forged"}\n' + encode_events([event(3)]))
    recovered = recover_orphans(database, TEST_CHAIN_KEY, directory)
    assert (recovered.events, recovered.unreadable) == (1, 1)
    assert chained_request_ids(database) == ["req-0001"]
    assert not orphan.path.exists()
    assert orphan.path.with_name(orphan.name + UNREADABLE_SUFFIX).exists()
    assert progress_rows(database) == {}


def test_a_live_journal_is_left_to_its_process(database: Database, directory: Path) -> None:
    live = AuditJournal.create(directory)
    try:
        live.append(encode_events([event(1)]))
        assert recover_orphans(database, TEST_CHAIN_KEY, directory).events == 0
        assert live.path.exists()
        assert chained_request_ids(database) == []
    finally:
        live.close(remove=True)


def test_recoverers_racing_chain_each_event_once(database: Database, directory: Path) -> None:
    for start in range(0, 40, 10):
        write_orphan(directory, [event(n) for n in range(start, start + 10)])
    errors = run_at_once(lambda: recover_orphans(database, TEST_CHAIN_KEY, directory), 4)
    assert errors == []
    ids = chained_request_ids(database)
    assert sorted(ids) == sorted(f"req-{n:04d}" for n in range(40))
    with database.read() as connection:
        assert connection.execute(select(func.count()).select_from(audit_events)).scalar() == 40
    assert verify(database).broken is None
    assert list(directory.iterdir()) == []


def test_an_orphaned_journal_goes_into_a_writer_of_its_own_closed_once_chained(
    database: Database, directory: Path
) -> None:
    """The dead process's journal becomes a chain of its own, named after the journal in the
    registry and closed at its end: nothing can be appended to it, nor cut from it, later."""
    orphan = write_orphan(directory, [event(1), event(2)])
    recover_orphans(database, TEST_CHAIN_KEY, directory)
    with database.read() as connection:
        entries = connection.execute(
            select(
                audit_registry.c.kind, audit_registry.c.label, audit_registry.c.end_seq
            ).order_by(audit_registry.c.seq)
        ).all()
        writers = set(connection.execute(select(audit_events.c.writer)).scalars())
    assert [(kind, end) for kind, _label, end in entries] == [
        ("legacy", 0),
        ("open", None),
        ("close", 2),
    ]
    assert entries[1].label.endswith(f", recovering journal {orphan.name}")
    assert len(writers) == 1
    result = verify(database)
    assert (result.broken, result.writers, result.open_writers) == (None, 2, 0)
