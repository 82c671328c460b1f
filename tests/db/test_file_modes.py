"""SQLite's files, the locks beside them, the data folder and the audit file copy are
owner-only whatever the umask (``db/engine.py``, ``db/migrate.py``, ``serving/startup.py``,
``audit/writer.py``, ``kit/private_files``).

The end-to-end attack (a real server under ``umask 000``, files opened as another user) is in
``tests/e2e/test_least_exposure.py``; these check the pieces in process.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from strongroom.audit.writer import AuditFileSink
from strongroom.db.engine import Database
from strongroom.db.migrate import migration_lock
from strongroom.kit.private_files import create_private_file, owner_only, private_directory
from strongroom.serving.startup import check_data_folder


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_new_database_its_wal_shm_and_locks_are_0600_and_new_folders_0700(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a" / "b" / "strongroom.db"
    database = Database.from_url(f"sqlite:///{path}")
    try:
        with migration_lock(database):  # as the server starts: its lock file is made here
            pass
        with database.write() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with database.read() as connection:
            assert connection.execute(text("SELECT x FROM t")).scalar_one() == 1
            companions = ("-wal", "-shm", ".write-lock", ".migrate-lock")
            files = [path, *(path.with_name(path.name + s) for s in companions)]
            assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}
    finally:
        database.dispose()
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


def test_files_an_earlier_version_left_readable_are_tightened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "strongroom.db"
    Database.from_url(f"sqlite:///{path}").dispose()
    lock = path.with_name(path.name + ".write-lock")
    path.chmod(0o644)
    lock.touch()
    lock.chmod(0o666)  # anyone could flock it and stall every writer
    migrate_lock = path.with_name(path.name + ".migrate-lock")
    migrate_lock.touch()
    migrate_lock.chmod(0o666)  # ... or every server's start
    Database.from_url(f"sqlite:///{path}").dispose()
    assert (mode(path), mode(lock), mode(migrate_lock)) == (0o600, 0o600, 0o600)
    captured = capsys.readouterr()
    assert "now owner only" in captured.out + captured.err


@pytest.mark.usefixtures("open_umask")
def test_the_servers_start_up_check_makes_missing_data_folders_0700(tmp_path: Path) -> None:
    """``strongroom server`` checks the data folder before anything opens the database: the
    folders it makes there are the ones the database and its journals then go in."""
    check_data_folder(f"sqlite:///{tmp_path / 'a' / 'b' / 'strongroom.db'}")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


@pytest.mark.usefixtures("open_umask")
def test_the_audit_file_copy_is_0600_in_new_folders_0700(tmp_path: Path) -> None:
    """``AUDIT_FILE`` is an audit file too (SPEC section 6): every caller, path and address."""
    path = tmp_path / "logs" / "audit.jsonl"
    sink = AuditFileSink(path)
    try:
        sink.append([])
    finally:
        sink.close()
    assert (mode(path.parent), mode(path)) == (0o700, 0o600)


def test_an_existing_folder_is_left_as_it_is(tmp_path: Path) -> None:
    """The folder a database is put in may be shared on purpose (a home, /var/lib)."""
    tmp_path.chmod(0o755)
    Database.from_url(f"sqlite:///{tmp_path / 'strongroom.db'}").dispose()
    assert mode(tmp_path) == 0o755


@pytest.mark.usefixtures("open_umask")
def test_the_helpers_set_modes_exactly(tmp_path: Path) -> None:
    folder = private_directory(tmp_path / "x" / "y")
    assert mode(folder) == mode(folder.parent) == 0o700
    assert create_private_file(folder / "f")
    assert not create_private_file(folder / "f")  # exists: left as it is
    assert mode(folder / "f") == 0o600
    (folder / "g").write_bytes(b"")
    (folder / "g").chmod(0o755)
    assert owner_only(folder / "g")
    assert mode(folder / "g") == 0o700
    assert not owner_only(folder / "g")
    assert not owner_only(folder / "missing")
    folder.chmod(0o755)
    private_directory(folder)
    assert mode(folder) == 0o755
    private_directory(folder, tighten=True)
    assert mode(folder) == 0o700
