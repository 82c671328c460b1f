"""AUDIT_FILE (AuditFileSink) and the writer's order of sinks: a failing file fails the
request and stores nothing, on every path of the writer, and never leaves a request waiting.
(End to end with a really full disk: tests/e2e/test_audit_fail_closed.py.)"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from strongroom.audit.writer import AuditFileSink, AuditWriter, audited_write
from strongroom.db.engine import Database
from strongroom.errors import ConfigurationError, ServiceUnavailableError
from tests.audit.test_journal import chained_request_ids, event
from tests.audit.test_writer_journal import journaled_writer
from tests.support.audit_chain import TEST_CHAIN_KEY, verify


class FullDisk:
    """``os.write`` on one descriptor as on a full disk: ``room`` more bytes, then ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, descriptor: int, room: int) -> None:
        self.room = room
        real = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            if fd != descriptor:
                return real(fd, data)
            if self.room <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            written = real(fd, bytes(data[: self.room]))
            self.room -= written
            return written

        monkeypatch.setattr(os, "write", write)


def _sink(tmp_path: Path) -> AuditFileSink:
    return AuditFileSink(tmp_path / "audit.jsonl")


def test_a_write_that_runs_out_of_room_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = _sink(tmp_path)
    sink.append([event(1)])
    before = sink.path.read_bytes()
    FullDisk(monkeypatch, sink._descriptor, room=40)  # part of the next line fits, not all
    with pytest.raises(OSError, match="No space"):
        sink.append([event(2), event(3)])
    assert sink.path.read_bytes() == before
    monkeypatch.undo()
    sink.append([event(4)])  # the next line starts on a line of its own
    lines = sink.path.read_bytes().splitlines(True)
    assert [b"req-0001" in lines[0], b"req-0004" in lines[1]] == [True, True]
    sink.close()


def test_the_file_is_the_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        sink = AuditFileSink(tmp_path / "new" / "audit.jsonl")
    finally:
        os.umask(previous)
    assert sink.path.stat().st_mode & 0o777 == 0o600
    assert sink.path.parent.stat().st_mode & 0o777 == 0o700
    sink.close()
    sink.path.chmod(0o644)
    AuditFileSink(sink.path).close()
    assert sink.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (lambda p: p.symlink_to(p.with_name("elsewhere")), "symbolic link"),
        (lambda p: p.mkdir(), "cannot open"),
        (lambda p: os.mkfifo(p), "not a regular file"),
    ],
)
def test_what_is_not_our_regular_file_is_refused(
    tmp_path: Path, plant: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "audit.jsonl"
    plant(path)
    with pytest.raises(ConfigurationError, match=message):
        AuditFileSink(path)
    assert not (tmp_path / "elsewhere").exists()


def test_reads_fail_closed_and_never_hang_when_the_file_fails(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite with a journal: the file is written first, so nothing is journaled either."""
    sink = _sink(tmp_path)
    writer = journaled_writer(database, sink)
    FullDisk(monkeypatch, sink._descriptor, room=0)

    async def scenario() -> list[BaseException | None]:
        results = await asyncio.wait_for(
            asyncio.gather(writer.write(event(1)), writer.write(event(2)), return_exceptions=True),
            5,
        )
        await writer.drain()
        return list(results)

    results = asyncio.run(scenario())
    assert [type(r) for r in results] == [ServiceUnavailableError] * 2
    journal = writer.journal
    assert journal is None or journal.size == 0
    assert chained_request_ids(database) == []


@pytest.mark.parametrize("inline", [True, False])
def test_group_commits_roll_back_when_the_file_fails(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    """Without a journal (on the loop, or in a thread as on PostgreSQL): chain, file, commit."""
    sink = _sink(tmp_path)
    writer = AuditWriter(database, TEST_CHAIN_KEY, sink, inline=inline)
    FullDisk(monkeypatch, sink._descriptor, room=0)

    async def scenario() -> BaseException | None:
        try:
            await asyncio.wait_for(writer.write(event(1)), 5)
        except ServiceUnavailableError as exc:
            return exc
        return None

    assert isinstance(asyncio.run(scenario()), ServiceUnavailableError)
    assert chained_request_ids(database) == []
    assert verify(database).broken is None


def test_a_mutation_rolls_back_when_the_file_fails(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = _sink(tmp_path)
    writer = AuditWriter(database, TEST_CHAIN_KEY, sink)
    with database.write() as connection:
        connection.execute(text("CREATE TABLE things (name TEXT)"))
    FullDisk(monkeypatch, sink._descriptor, room=0)
    created = event(1)
    with (
        pytest.raises(ServiceUnavailableError),
        audited_write(database, writer, created, 201) as connection,
    ):
        connection.execute(text("INSERT INTO things VALUES ('x')"))
    assert not created.written
    # Reopened: the middleware records the 503 instead, not the success that never committed.
    assert (created.status, created.outcome) == (0, "")
    created.finish(503)
    assert created.outcome == "failure"
    with database.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM things")).scalar() == 0
    assert chained_request_ids(database) == []
    monkeypatch.undo()
    created.reopen()
    with audited_write(database, writer, created, 201) as connection:
        connection.execute(text("INSERT INTO things VALUES ('x')"))
    assert created.written
    assert b"req-0001" in sink.path.read_bytes()
    assert chained_request_ids(database) == ["req-0001"]
