"""SQLite backups while the server runs, and putting one back (SPEC section 6).

PostgreSQL stores are backed up with ``pg_dump`` and restored with ``pg_restore`` (README,
"Backups"); :func:`sqlite_file` says so to whoever asks this module for one.

What a backup is: one SQLite file (rollback-journal mode, no ``-wal`` beside it, mode 0600)
holding the whole store as it was at one moment: secrets (encrypted), their data keys (wrapped
by the master key), auth methods, roles, tokens and the audit chain. What it is not: the master
key. Without the master key, or the KMS key, that wrapped the data keys, a backup can be read
by nobody, whoever holds the file; keep the key apart from the backups, and as long as them.

:func:`backup` contract:

- Consistent while servers write: SQLite's online backup API copies from one read transaction
  held for the whole copy, so the copy is the store at the moment that transaction began
  (WAL mode: writers go on meanwhile). Without that transaction the backup API starts over
  each time another process writes, and under a steady load it never finishes.
- Audit events of reads and denials (SQLite, in a server) are durable in each process's audit
  journal before they reach the chain (``audit/journal.py``). Before the snapshot starts, the
  backup waits until every journal has been chained up to the size it had when the backup
  began (within ``JOURNAL_WAIT_SECONDS``; else BackupError): every event acknowledged before
  the backup began is then in the copy.
- The file appears complete or not at all (written beside it, fsynced, renamed into place).

:func:`restore` contract:

- Refuses a store that a running server (or any other process) has open: it takes the lock
  that every SQLite connection to a WAL database holds a share of (the "dead man switch" byte
  of ``<db>-shm``), and holds it until the new store is in place, so nothing opens the store
  half replaced. Refuses to replace an existing store without ``force``; the old one is then
  kept beside it (``<db>.pre-restore-<time>``, with its WAL and audit journals).
- Verifies a private copy before it is put in place: ``PRAGMA integrity_check``, a schema this
  version knows (older ones are migrated), data keys that the configured master key opens, an
  audit chain that verifies. Then the restore's own audit event is appended to the copy.

Every failure is a :class:`BackupError` whose message is one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from strongroom.audit.event import AuditEvent
from strongroom.audit.journal import chained_offsets, journal_directory, journal_sizes
from strongroom.audit.store import seal_anchor
from strongroom.audit.verification import verify_chain
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.crypto import MasterKeyProvider
from strongroom.db import migrate
from strongroom.db.engine import Database
from strongroom.db.keys import Keys, load_or_create_keys
from strongroom.errors import ConfigurationError
from strongroom.kit.clock import utc_now
from strongroom.kit.ids import new_request_id
from strongroom.secrets.repository import count_items

Progress = Callable[[int, int], None]  # (pages copied, pages in all)
WriterFor = Callable[[Database, Keys], AuditWriter]

# Pages copied per step of the online backup (1 MiB of 4 KiB pages): the progress bar moves
# this often; the read transaction is held across steps, so the step size changes nothing else.
PAGES_PER_STEP = 256
JOURNAL_WAIT_SECONDS = 10.0
# sqlite3's unix VFS: every connection to a WAL database holds a shared lock on this byte of
# the -shm file while open ("DMS", the dead man switch); whoever gets it exclusively knows no
# other process has the database open (SQLite's os_unix.c, UNIX_SHM_DMS = 120 + 8).
SHM_DMS_BYTE = 128
_SIDECARS = ("-journal", "-wal", "-shm", ".write-lock", ".migrate-lock")


class BackupError(Exception):
    """A backup or restore that cannot be done; ``str()`` is the one line to print."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int  # bytes
    waited_journals: int  # journals whose events were waited for


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    kept: Path | None  # where the store it replaced is kept
    migrated_from: str | None  # the backup's schema revision, when it was older
    items: int
    events: int  # audit events verified


def sqlite_file(database_url: str) -> Path:
    """The SQLite file of ``database_url``; BackupError for anything else."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise BackupError(
            f"STRONGROOM_DATABASE_URL is not a database URL: {database_url!r}"
        ) from None
    if url.get_backend_name() == "postgresql":
        raise BackupError(
            "this store is PostgreSQL: back it up with pg_dump and restore it with pg_restore "
            "(README.md, Backups); strongroom backup and restore copy SQLite stores"
        )
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError("backup and restore copy SQLite stores kept in a file")
    return Path(url.database).absolute()


# -- backup -----------------------------------------------------------------------------------


def backup(
    database: Database,
    target: Path,
    *,
    writer: AuditWriter | None = None,
    force: bool = False,
    progress: Progress | None = None,
    journal_wait: float = JOURNAL_WAIT_SECONDS,
) -> BackupResult:
    """Copy the store of ``database`` to ``target`` (see the module docstring); with
    ``writer``, the backup's audit event goes into the store once the copy is in place."""
    source = sqlite_file(database.engine.url.render_as_string(hide_password=False))
    target = target.absolute()
    if not target.parent.is_dir():
        raise BackupError(f"no folder {target.parent} to write the backup in")
    if target.exists() or target.is_symlink():
        if not force:
            raise BackupError(f"{target} exists: choose another name, or replace it with --force")
        if not target.is_file() or (source.exists() and target.samefile(source)):
            raise BackupError(f"{target} is not a backup file to replace")
    waited = _settle_audit_journals(database, journal_wait)
    partial = _private_file(target.parent, f".{target.name}.", ".partial")
    try:
        _copy(source, partial, progress)
        _fsync(partial)
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        _remove_with_sidecars(partial)
    result = BackupResult(target, target.stat().st_size, waited)
    if writer is not None:
        event = AuditEvent(
            time=utc_now(),
            request_id=new_request_id(),
            source_ip="local",
            action="sys.backup",
            path="/",
            reason=f"to {target} ({result.size} bytes)"[:2000],
        )
        with audited_write(database, writer, event, 200):
            pass
    return result


def _settle_audit_journals(database: Database, timeout: float) -> int:
    """Wait until every audit journal is chained up to its size now; the journals waited for."""
    directory = journal_directory(database)
    targets = journal_sizes(directory)
    if directory is None or not targets:
        return 0
    deadline = time.monotonic() + timeout
    while True:
        chained = chained_offsets(database)
        behind = [
            name
            for name, size in targets.items()
            if chained.get(name, 0) < size and (directory / name).exists()
        ]
        if not behind:
            return len(targets)
        if time.monotonic() >= deadline:
            raise BackupError(
                f"audit events journaled before the backup began are still not in the audit "
                f"chain after {timeout:g} s ({len(behind)} journal(s) in {directory}): if no "
                "server runs, start it (it chains what stopped processes left), then back up "
                "again; if one runs, check that it can write its database"
            )
        time.sleep(0.05)


def _copy(source: Path, target: Path, progress: Progress | None) -> None:
    """Copy the SQLite database ``source`` into the empty file ``target``, consistently."""
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    reader = sqlite3.connect(source, isolation_level=None, timeout=30)
    try:
        # One read transaction for the whole copy: its snapshot is what is copied (see the
        # module docstring). It starts with the first read.
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        writer = sqlite3.connect(target, isolation_level=None)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            reader.backup(writer, pages=PAGES_PER_STEP, progress=step, sleep=0)
            # One self-contained file: no -wal to carry along with it.
            writer.execute("PRAGMA journal_mode=DELETE").fetchone()
            (check,) = writer.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise BackupError(f"the copy of {source} does not check out: {check}")
        finally:
            writer.close()
        reader.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} cannot be read as a SQLite database: {exc}") from None
    finally:
        reader.close()


# -- restore ----------------------------------------------------------------------------------


def restore(
    database_url: str,
    source: Path,
    master: MasterKeyProvider,
    writer_for: WriterFor,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Put the backup ``source`` in place as the store of ``database_url`` (see the module
    docstring); ``writer_for`` gives the audit writer of a database (the restore's event)."""
    path = sqlite_file(database_url)
    source = source.absolute()
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    if path.exists() and source.samefile(path):
        raise BackupError(f"{source} is the store itself, not a backup of it")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = StoreLock.take(path)
    try:
        if path.exists() and not force:
            raise BackupError(
                f"a store exists at {path}: restoring replaces it (it is kept beside it as "
                f"{path.name}.pre-restore-<time>); say so with --force"
            )
        staged = _private_file(path.parent, f".{path.name}.", ".restore")
        try:
            _copy(source, staged, progress)
            result = _verify_and_stamp(staged, source, master, writer_for)
            _give_to_the_servers_user(path, staged)
            kept = _keep_aside(path)
            os.replace(staged, path)
            _fsync(path.parent)
        finally:
            _remove_with_sidecars(staged)
    finally:
        lock.release()
    return RestoreResult(path, kept, *result)


class StoreLock:
    """Exclusive hold of a SQLite WAL store: no other process has it open, none can open it.

    The lock is an ``fcntl`` lock on the dead man switch byte of ``<db>-shm`` (see
    ``SHM_DMS_BYTE``): each connection of another process holds a shared lock there, and a
    connection that cannot take one cannot open the database. ``fcntl`` locks belong to the
    process: this process must not open the store itself while it holds one (closing any
    descriptor of the file would drop the lock).
    """

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor

    @classmethod
    def take(cls, path: Path) -> StoreLock:
        shm = Path(f"{path}-shm")
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            descriptor = os.open(shm, flags, 0o600)
        except OSError as exc:
            raise BackupError(f"cannot open {shm}: {exc.strerror}") from None
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
        except OSError:
            os.close(descriptor)
            raise BackupError(
                f"the store {path} is in use by a running server (or another process): stop "
                "it first; a restore never replaces a store under a running server"
            ) from None
        lock = cls(descriptor)
        if _journals_held(journal_directory_of(path)):
            lock.release()
            raise BackupError(
                f"the store {path} is in use: a server process holds its audit journal; stop "
                "it first"
            )
        return lock

    def release(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)  # closing drops the lock
            self._descriptor = -1


def journal_directory_of(path: Path) -> Path:
    """``<db>.audit-journal`` (audit/journal.py) of a store by its path."""
    return Path(f"{path}.audit-journal")


def _journals_held(directory: Path) -> bool:
    """Whether a living server process holds one of the journals in ``directory``."""
    if not directory.is_dir():
        return False
    for journal in directory.glob("*.jsonl"):
        try:
            descriptor = os.open(journal, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)  # releases the probe's lock
    return False


def _verify_and_stamp(
    staged: Path, source: Path, master: MasterKeyProvider, writer_for: WriterFor
) -> tuple[str | None, int, int]:
    """Check the private copy ``staged`` of the backup ``source``, bring its schema up to date
    and append the restore's audit event; (revision migrated from, items, events)."""
    with contextlib.closing(sqlite3.connect(staged, isolation_level=None)) as raw:
        try:
            problems = [row[0] for row in raw.execute("PRAGMA integrity_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source} is not a SQLite database: {exc}") from None
    if problems != ["ok"]:
        raise BackupError(f"the backup {source} is damaged: {'; '.join(problems)}")
    database = Database.from_url(f"sqlite:///{staged}")
    try:
        revision = migrate.current_revision(database)
        if revision is None:
            raise BackupError(f"{source} is not a Strongroom backup (it has no schema version)")
        if not migrate.is_known_revision(revision):
            raise BackupError(
                f"{source} was made by a newer Strongroom (schema {revision}): restore it "
                "with that version"
            )
        migrated_from = None
        if not migrate.is_up_to_date(database):
            migrate.upgrade(database)
            migrated_from = revision
        try:
            keys = load_or_create_keys(database, master, create=False)
        except ConfigurationError as exc:
            raise BackupError(
                f"the master key configured here does not open the data keys of {source} "
                f"({exc}): a backup is readable only with the master key (or KMS key) of the "
                "store it was made from"
            ) from None
        # A store backed up before its first keyed start is anchored here, as a server would.
        seal_anchor(database, keys.audit)
        with database.read() as connection:
            verified = verify_chain(connection, keys.audit)
            count = count_items(connection)
        if verified.broken is not None:
            where = f" at event {verified.broken.seq}" if verified.broken.seq else ""
            raise BackupError(
                f"the audit chain of {source} is broken{where}: {verified.broken.problem}"
            )
        event = AuditEvent(
            time=utc_now(),
            request_id=new_request_id(),
            source_ip="local",
            action="sys.restore",
            path="/",
            reason=f"restored from {source}"[:2000],
        )
        writer = writer_for(database, keys)
        with audited_write(database, writer, event, 200):
            pass
        writer.close_chains()  # the restore's chain ends here: nothing more is appended to it
    finally:
        database.dispose()
    _self_contained(staged)
    return migrated_from, count, verified.checked


def _self_contained(path: Path) -> None:
    """Move what the WAL of ``path`` holds into the file and drop the WAL: the file is then
    the whole store (a server reopening it in WAL mode starts a WAL of its own)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode=DELETE").fetchone()
    if mode != "delete" or Path(f"{path}-wal").exists():
        raise BackupError(f"cannot fold the write-ahead log of {path} into it")


def _give_to_the_servers_user(path: Path, staged: Path) -> None:
    """Run as root, give the restored store (and its -shm) the owner of the store it replaces,
    or of its folder: a server running as its own user could not open a root-owned 0600 file."""
    if os.geteuid() != 0:
        return
    owner = path.stat() if path.exists() else path.parent.stat()
    if owner.st_uid == 0:
        return
    for file in (staged, Path(f"{path}-shm")):
        os.chown(file, owner.st_uid, owner.st_gid)


def _keep_aside(path: Path) -> Path | None:
    """Move the store at ``path`` (its WAL and audit journals with it) to a name of its own;
    where it went, or None when there was none."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.pre-restore-{stamp}")
    number = 1
    while Path(f"{aside}").exists() or Path(f"{aside}.audit-journal").exists():
        number += 1  # restored twice within a second
        aside = path.with_name(f"{path.name}.pre-restore-{stamp}-{number}")
    moved = False
    # The old WAL goes with its database: left beside the new one, SQLite would replay it
    # onto the restored store. The -shm stays (locked here); SQLite resets it on next open.
    for suffix in ("", "-wal", ".audit-journal"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            os.replace(old, Path(f"{aside}{suffix}"))
            moved = moved or suffix == ""
    return aside if moved else None


# -- files ------------------------------------------------------------------------------------


def _private_file(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file in ``folder``, readable by its owner only (0600 whatever the umask)."""
    try:
        descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:
        raise BackupError(f"cannot create a file in {folder}: {exc.strerror}") from None
    os.close(descriptor)
    return Path(name)


def _remove_with_sidecars(path: Path) -> None:
    for suffix in ("", *_SIDECARS):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
