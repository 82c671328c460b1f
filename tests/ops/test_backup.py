"""strongroom.ops.backup in this process: what a backup waits for and how it is copied, and each
check a restore makes before it puts a backup in place (tests/e2e/test_backup_restore.py runs
the commands around a real server)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from strongroom.audit.event import AuditEvent
from strongroom.audit.journal import AuditJournal, encode_events, record_progress
from strongroom.audit.store import seal_anchor
from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import bootstrap
from strongroom.crypto import LocalMasterKey
from strongroom.db import migrate
from strongroom.db.engine import Database
from strongroom.db.keys import Keys, load_or_create_keys
from strongroom.db.tables import audit_events
from strongroom.kit.clock import utc_now
from strongroom.ops.backup import (
    PAGES_PER_STEP,
    BackupError,
    StoreLock,
    backup,
    restore,
    sqlite_file,
)
from tests.support.audit_chain import verify, write_chain_of_revision_0003
from tests.support.databases import sqlite_copy

MASTER = LocalMasterKey(bytes(range(32)))


def writer_for(database: Database, keys: Keys) -> AuditWriter:
    return AuditWriter(database, keys.audit)


@pytest.fixture
def store(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A bootstrapped SQLite store at tmp_path/live/db.sqlite."""
    database = Database.from_url(sqlite_copy(sqlite_template, tmp_path / "live" / "db.sqlite"))
    keys = load_or_create_keys(database, MASTER)
    seal_anchor(database, keys.audit)
    bootstrap(database, keys, AuditWriter(database, keys.audit))
    yield database
    database.dispose()


def url_of(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=False)


def test_only_sqlite_files_are_backed_up() -> None:
    with pytest.raises(BackupError, match="back it up with pg_dump and restore it with pg_restore"):
        sqlite_file("postgresql+psycopg://u@h/db")
    with pytest.raises(BackupError, match="kept in a file"):
        sqlite_file("sqlite:///:memory:")
    assert sqlite_file("sqlite:////srv/db.sqlite") == Path("/srv/db.sqlite")


def test_a_backup_waits_for_journaled_audit_events(store: Database, tmp_path: Path) -> None:
    """A read's event acknowledged before the backup began sits in a journal until the server
    chains it: the backup must not start its snapshot before that."""
    journal = AuditJournal.create(Path(f"{sqlite_file(url_of(store))}.audit-journal"))
    event = AuditEvent(time=utc_now(), request_id="r1", source_ip="127.0.0.1", action="read")
    event.finish(200)
    size = journal.append(encode_events([event]))
    target = tmp_path / "b.sqlite"
    try:
        with pytest.raises(BackupError, match=r"still not in the audit chain after 0\.2 s"):
            backup(store, target, journal_wait=0.2)
        assert not target.exists()
        with store.write() as connection:  # what the journal's server does, 50 ms later
            record_progress(connection, journal.name, size)
        assert backup(store, target, journal_wait=0.2).waited_journals == 1
    finally:
        journal.close(remove=True)


def test_a_backup_is_one_private_file_copied_in_steps(store: Database, tmp_path: Path) -> None:
    # Enough pages for several steps of the copy.
    with store.write() as connection:
        connection.execute(text("CREATE TABLE filler (blob BLOB)"))
        for _ in range(3 * PAGES_PER_STEP):
            connection.execute(text("INSERT INTO filler VALUES (randomblob(4000))"))
    seen: list[tuple[int, int]] = []
    target = tmp_path / "b.sqlite"
    result = backup(store, target, progress=lambda done, total: seen.append((done, total)))
    assert result.size == target.stat().st_size
    assert target.stat().st_mode & 0o777 == 0o600
    assert len(seen) >= 3
    assert seen[-1][0] == seen[-1][1]
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "live") == ["b.sqlite"]
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    with pytest.raises(BackupError, match="exists: choose another name"):
        backup(store, target)
    backup(store, target, force=True)
    with pytest.raises(BackupError, match="is not a backup file to replace"):
        backup(store, sqlite_file(url_of(store)), force=True)


@pytest.fixture
def made(store: Database, tmp_path: Path) -> Path:
    return backup(store, tmp_path / "made.sqlite").path


def restore_to(tmp_path: Path, source: Path, **kwargs: object) -> object:
    return restore(
        f"sqlite:///{tmp_path / 'restored' / 'db.sqlite'}",
        source,
        kwargs.pop("master", MASTER),  # type: ignore[arg-type]
        writer_for,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_backup_restores_and_records_it(made: Path, tmp_path: Path) -> None:
    result = restore_to(tmp_path, made)
    restored = Database.from_url(f"sqlite:///{tmp_path / 'restored' / 'db.sqlite'}")
    try:
        with restored.read() as connection:
            actions = connection.execute(select(audit_events.c.action)).scalars().all()
    finally:
        restored.dispose()
    assert actions == ["sys.bootstrap", "sys.restore"]
    assert result.kept is None  # type: ignore[attr-defined]
    assert (tmp_path / "restored" / "db.sqlite").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "restored" / "db.sqlite-wal").exists()
    leftovers = [p.name for p in (tmp_path / "restored").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_backup_of_a_single_chain_store_is_migrated_and_its_chain_kept(tmp_path: Path) -> None:
    """A backup made by a version before chains per writer (schema 0003): restored, its chain
    is writer 1, closed at its head, and verifies; the restore's event goes into a new one."""
    old = tmp_path / "old.sqlite"
    database = Database.from_url(f"sqlite:///{old}")
    try:
        migrate.upgrade(database, "0003")
        keys = load_or_create_keys(database, MASTER)
        events = []
        for n in range(3):
            made = AuditEvent(
                time=utc_now(), request_id=f"req-{n}", source_ip="local", action="sys.bootstrap"
            )
            made.finish(200)
            events.append(made)
        write_chain_of_revision_0003(
            database, keys.audit, events, sealed_at="2026-12-02T10:00:00.000000Z"
        )
    finally:
        database.dispose()
    result = restore_to(tmp_path, old)
    assert result.migrated_from == "0003"  # type: ignore[attr-defined]
    assert result.events == 3  # type: ignore[attr-defined]
    restored = Database.from_url(f"sqlite:///{tmp_path / 'restored' / 'db.sqlite'}")
    try:
        with restored.read() as connection:
            placed = connection.execute(
                select(audit_events.c.action, audit_events.c.writer).order_by(audit_events.c.seq)
            ).all()
        keys = load_or_create_keys(restored, MASTER, create=False)
        verified = verify(restored, keys.audit)
    finally:
        restored.dispose()
    assert [(action, writer == 1) for action, writer in placed] == [
        ("sys.bootstrap", True),
        ("sys.bootstrap", True),
        ("sys.bootstrap", True),
        ("sys.restore", False),
    ]
    assert (verified.broken, verified.checked, verified.writers, verified.open_writers) == (
        None,
        4,
        2,
        0,
    )


def test_a_damaged_backup_is_refused(made: Path, tmp_path: Path) -> None:
    data = bytearray(made.read_bytes())
    data[4096 * 3 : 4096 * 3 + 512] = bytes(512)  # a page of a table, zeroed
    made.write_bytes(bytes(data))
    # Which check catches it first depends on the page the damage hit.
    with pytest.raises(
        BackupError,
        match=r"made\.sqlite (is damaged|does not check out|cannot be read as a SQLite database)",
    ):
        restore_to(tmp_path, made)
    assert not (tmp_path / "restored" / "db.sqlite").exists()
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BackupError, match="junk"):
        restore_to(tmp_path, junk)


def test_a_backup_needs_the_master_key_it_was_made_with(made: Path, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="readable only with the master key"):
        restore_to(tmp_path, made, master=LocalMasterKey(bytes(32)))
    assert not (tmp_path / "restored" / "db.sqlite").exists()


def test_a_backup_whose_audit_chain_was_rewritten_is_refused(made: Path, tmp_path: Path) -> None:
    with sqlite3.connect(made) as copy:
        copy.execute("UPDATE audit_events SET source_ip = '10.6.6.6' WHERE seq = 1")
    with pytest.raises(BackupError, match=r"audit chain of .* is broken at event 1"):
        restore_to(tmp_path, made)


def test_a_backup_of_a_newer_version_is_refused(made: Path, tmp_path: Path) -> None:
    with sqlite3.connect(made) as copy:
        copy.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(BackupError, match=r"made by a newer Strongroom \(schema 9999\)"):
        restore_to(tmp_path, made)


def test_an_existing_store_is_replaced_only_when_asked_and_kept(
    store: Database, made: Path
) -> None:
    path = sqlite_file(url_of(store))
    store.dispose()  # no connection of this process may hold it: the lock is per process
    with pytest.raises(BackupError, match=r"a store exists at .*say so with --force"):
        restore(str(store.engine.url), made, MASTER, writer_for)
    result = restore(str(store.engine.url), made, MASTER, writer_for, force=True)
    assert result.kept is not None
    assert result.kept.name.startswith("db.sqlite.pre-restore-")
    assert result.kept.is_file()
    assert path.is_file()


# Another process with the store open (a server's worker does so for as long as it runs).
HOLD_OPEN = textwrap.dedent("""
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1])
    connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    print("open", flush=True)
    sys.stdin.read()
""")


def test_a_store_another_process_has_open_is_never_replaced(store: Database, made: Path) -> None:
    path = sqlite_file(url_of(store))
    store.dispose()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(BackupError, match="in use by a running server"):
            restore(str(store.engine.url), made, MASTER, writer_for, force=True)
    finally:
        holder.communicate("")
    # Once it has let go, the lock is ours (and held, nothing else opens the store meanwhile).
    lock = StoreLock.take(path)
    lock.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root restores for another user")
def test_restored_as_root_the_store_is_the_servers_users(made: Path, tmp_path: Path) -> None:
    """A server running as its own user (uid 10001 in the image) must be able to open what
    root restored for it: the store and its -shm get the owner of the store's folder."""
    folder = tmp_path / "restored"
    folder.mkdir()
    os.chown(folder, 10001, 10001)
    restore_to(tmp_path, made)
    for name in ("db.sqlite", "db.sqlite-shm"):
        found = (folder / name).stat()
        assert (found.st_uid, found.st_gid, found.st_mode & 0o777) == (10001, 10001, 0o600)
