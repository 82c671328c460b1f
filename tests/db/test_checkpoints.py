"""SQLite WAL checkpoints off the request path: the background checkpointer moves the WAL into
the database file and then restarts the WAL itself, so that no request's commit is the first
after a complete checkpoint (that commit waits for an fsync of the new WAL header)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from strongroom.db.engine import Checkpointer, Database
from tests.support.concurrency import HeldLock
from tests.support.databases import sqlite_copy


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    # As the server opens it: commits never checkpoint, the Checkpointer does.
    url = sqlite_copy(sqlite_template, tmp_path / "c.db")
    database = Database.from_url(url, background_checkpoints=True)
    with database.write() as connection:
        connection.execute(text("CREATE TABLE filler (n INTEGER, pad TEXT)"))
    yield database
    database.dispose()


def fill(database: Database, rows: int = 200) -> None:
    """Commit enough to put several pages (frames) in the WAL."""
    with database.write() as connection:
        connection.execute(
            text("INSERT INTO filler VALUES (:n, :pad)"),
            [{"n": n, "pad": "x" * 200} for n in range(rows)],
        )


def user_version(database: Database) -> int:
    with database.read() as connection:
        return int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())


def test_checkpoint_reports_frames_in_the_wal_and_moved(database: Database) -> None:
    fill(database)
    in_wal, moved = database.checkpoint()
    assert in_wal > 1
    assert moved == in_wal  # nobody reading: all of it reached the database file


def test_restart_starts_the_wal_over_and_changes_nothing(database: Database) -> None:
    with database.write() as connection:
        connection.exec_driver_sql("PRAGMA user_version = 7")
    fill(database)
    in_wal, moved = database.checkpoint()
    assert in_wal == moved > 1
    assert database.restart_wal() is True
    # The WAL was started over: it holds the restart's one frame, not in_wal + 1.
    assert database.checkpoint() == (1, 1)
    assert user_version(database) == 7
    with database.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM filler")).scalar_one() == 200


def test_restart_gives_way_to_a_writer_holding_the_turn(database: Database) -> None:
    with HeldLock(database):
        started = time.monotonic()
        assert database.restart_wal() is False  # at once: that writer restarts it if need be
        assert time.monotonic() - started < 1.0


def test_checkpointers_restart_the_wal_after_writes_and_leave_an_idle_one_alone(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    restarts: list[float] = []
    restart = Database.restart_wal

    def counted(self: Database, *, blocking: bool = False) -> bool:
        done = restart(self, blocking=blocking)
        if done:
            restarts.append(time.monotonic())
        return done

    monkeypatch.setattr(Database, "restart_wal", counted)
    # Two, as two workers of one server run.
    checkpointers = [Checkpointer(database, interval=0.02).start() for _ in range(2)]
    try:
        fill(database)
        deadline = time.monotonic() + 5
        while not restarts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert restarts, "no checkpointer restarted the WAL after a complete checkpoint"
        time.sleep(0.5)  # 25 more ticks each, with nothing new to move
        # The restart's own frame does not set off another restart, by either checkpointer.
        assert len(restarts) == 1
        assert database.checkpoint() == (1, 1)
    finally:
        for checkpointer in checkpointers:
            checkpointer.stop()
