"""The database boundary: one engine per process, read connections and write transactions.

Work is synchronous SQLAlchemy Core. Where it runs is decided by ``db/work.py``: inline on the
event loop for SQLite (a query costs microseconds, far less than the hop to a thread pool,
measured in ``bench/``), on a thread with a deadline for PostgreSQL. Write transactions on
SQLite start with ``BEGIN IMMEDIATE`` so that two workers never both read and then fail to
upgrade to a write lock.

PostgreSQL connections carry the ``DB_TIMEOUT_SECONDS`` bounds (:func:`postgres_options`): a
connect timeout, a server-side statement timeout and TCP keepalives; the pool waits that long
for a connection. A thread stuck anyway (a network that stopped answering answers no statement
timeout) is abandoned by its caller, and ``db/deadline.py`` keeps it from committing late.
"""

from __future__ import annotations

import fcntl
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import structlog
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError

from strongroom.db import counters, deadline
from strongroom.db.driver import DRIVER_OPERATIONAL_ERRORS
from strongroom.errors import ConfigurationError, ServiceUnavailableError
from strongroom.kit.private_files import (
    create_private_file,
    owner_only,
    private_directory,
    private_opener,
)

_WRITE_OPTION = "strongroom_write"
log = structlog.get_logger("strongroom.db")


def postgres_options(timeout: float) -> dict[str, Any]:
    """libpq connection parameters that bound every round trip to ``timeout`` seconds where
    libpq or the server can: connecting (libpq counts whole seconds, at least 2), each
    statement (cancelled by the server) and a transaction left idle; keepalives notice a peer
    that is gone. What none of these can bound (a network that takes requests and never
    answers) is the caller's deadline's job (``db/work.py``, ``db/pg_async.py``)."""
    milliseconds = max(1, round(timeout * 1000))
    return {
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": (
            f"-c statement_timeout={milliseconds} "
            f"-c idle_in_transaction_session_timeout={max(milliseconds, 60_000)}"
        ),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def make_engine(
    database_url: str, *, background_checkpoints: bool = False, timeout: float | None = None
) -> Engine:
    """Create the engine for ``database_url`` (``sqlite:///…`` or ``postgresql+psycopg://…``).

    ``background_checkpoints`` (SQLite): commits never run WAL checkpoints themselves (with
    their fsync, inside some unlucky request); :class:`Checkpointer` runs them instead.
    ``timeout`` (PostgreSQL; ``DB_TIMEOUT_SECONDS`` in a server): bounds connecting, each
    statement and the wait for a pooled connection. None (tools, migrations): no bounds.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(database_url, url.database, background_checkpoints)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() not in ("psycopg", ""):
            raise ConfigurationError(
                "PostgreSQL URLs use the psycopg driver: postgresql+psycopg://user@host/db"
            )
        url = url.set(drivername="postgresql+psycopg")
        if timeout is None:
            return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        engine = create_engine(
            url,
            pool_size=8,
            max_overflow=8,
            pool_timeout=timeout,
            connect_args=postgres_options(timeout),
        )
        _ping_when_idle(engine)
        return engine
    raise ConfigurationError(
        f"unsupported database {url.get_backend_name()!r}: use sqlite:///path or "
        "postgresql+psycopg://user@host/db"
    )


# A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0
_LAST_USED = "strongroom.last_used"


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it sat idle for IDLE_PING_SECONDS.

    ``pool_pre_ping`` pings on every checkout: a round trip more for every transaction, an
    audit group commit's included (a seventh of its cost with the database a millisecond
    away). A connection in steady use has just proven itself; one left idle may have been
    dropped by a restart or a failover, and is replaced before anyone uses it. A connection
    that breaks while in use fails its transaction (503) and makes SQLAlchemy drop every
    connection of the pool made before it.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < IDLE_PING_SECONDS:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool replaces it and tries again
            raise DisconnectionError(f"idle connection failed its ping: {exc!r}") from exc


# The files SQLite and Strongroom keep next to a database: its WAL, its shared memory, a
# rollback journal (briefly, before WAL mode is on), the writers' flock and the migration
# lock's (db/migrate.py).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", ".write-lock", ".migrate-lock")


def _private_sqlite_files(database: Path) -> None:
    """Create the database file 0600 (with missing folders 0700) before SQLite opens it, and
    take group and other bits away from it and its companions if they have any.

    SQLite creates a missing database file 0644 less the umask (world-readable token digests,
    audit trail and wrapped keys under ``umask 000``) and gives its WAL, shared-memory and
    journal files the database file's mode: a database created 0600 keeps them all 0600.
    Files an earlier version left readable by others are tightened, with a warning; a file
    this user may not change (another's, shared on purpose) only gets the warning. Raises
    OSError when the folder or the file cannot be created.
    """
    private_directory(database.parent)
    create_private_file(database)
    tightened, left = [], []
    for path in (database, *(database.with_name(database.name + s) for s in SQLITE_COMPANIONS)):
        try:
            if owner_only(path):
                tightened.append(str(path))
        except PermissionError:
            left.append(str(path))
    if tightened:
        log.warning("database files were readable by others; now owner only", files=tightened)
    if left:
        log.warning("database files are readable by others and not ours to change", files=left)


def _make_sqlite_engine(
    database_url: str, database: str | None, background_checkpoints: bool
) -> Engine:
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            _private_sqlite_files(Path(database))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot prepare the SQLite database {database}: {exc.strerror or exc}"
            ) from None
    engine = create_engine(database_url, pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event choose the kind of transaction (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if background_checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight to the driver: through exec_driver_sql this statement cost about 80 µs of
        # every transaction (a login's, an audit group commit's), holding SQLite's write lock.
        statement = (
            "BEGIN IMMEDIATE" if connection.get_execution_options().get(_WRITE_OPTION) else "BEGIN"
        )
        connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]

    return engine


class WriterBusyError(Exception):
    """Another writer holds the SQLite write turn (only from ``write(blocking=False)``)."""


class _WriterQueue:
    """Serialises SQLite writers across threads and worker processes.

    SQLite's own busy handler sleeps 1, 2, 5, 10… ms between retries although the write lock
    is usually free again within half a millisecond; with two workers that sleeping made the
    p99 of reads ~100 ms. A flock wakes the next writer as soon as the lock is released.
    """

    def __init__(self, lock_path: Path) -> None:
        self._thread_lock = threading.Lock()
        self._path = lock_path
        self._file: BinaryIO | None = None

    def _fileno(self) -> int:
        # Opened on first use and again after close(): an engine outlives dispose().
        if self._file is None or self._file.closed:
            # 0600: anyone who can open the lock file can flock it, and hold every writer
            # of the server (its audit commits included) waiting for as long as they like.
            self._file = open(self._path, "a+b", opener=private_opener)  # noqa: SIM115 (held)
        return self._file.fileno()

    @contextmanager
    def held(self, *, blocking: bool = True) -> Iterator[None]:
        """Hold the writer turn; ``blocking=False``: WriterBusyError rather than waiting."""
        if not self._thread_lock.acquire(blocking=blocking):
            raise WriterBusyError
        try:
            fileno = self._fileno()
            try:
                fcntl.flock(fileno, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                raise WriterBusyError from None
            try:
                yield
            finally:
                fcntl.flock(fileno, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Database:
    """Hands out connections; the only owner of the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Called, in the committing thread, with (counter, new value) for each counter a write
        # bumped (db/counters.py), once it has committed: this process's own change feed
        # learns of its changes before any request can follow them (db/change_feed.py).
        self.counter_listeners: list[Callable[[str, int], None]] = []
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._writers = (
            _WriterQueue(Path(database + ".write-lock"))
            if database and database != ":memory:"
            else None
        )

    @classmethod
    def from_url(
        cls,
        database_url: str,
        *,
        background_checkpoints: bool = False,
        timeout: float | None = None,
    ) -> Database:
        return cls(
            make_engine(
                database_url, background_checkpoints=background_checkpoints, timeout=timeout
            )
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; its implicit transaction is rolled back at the end."""
        deadline.check("a read")
        try:
            with self.engine.connect() as connection:
                yield connection
        except OperationalError as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc.orig!r}"
            ) from exc

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction that sees one consistent state of the whole database for as
        long as it lasts, whatever others commit meanwhile, and can write nothing.

        PostgreSQL: REPEATABLE READ, READ ONLY (the snapshot is taken at the first statement).
        SQLite: one read transaction (WAL mode: its snapshot is taken at the first read) with
        ``PRAGMA query_only`` on, reset before the connection goes back to the pool.
        """
        try:
            with self.engine.connect() as raw:
                if self.dialect == "sqlite":
                    driver_connection: Any = raw.connection.driver_connection
                    driver_connection.execute("PRAGMA query_only = ON")
                    try:
                        with raw.begin():
                            yield raw
                    finally:
                        driver_connection.execute("PRAGMA query_only = OFF")
                    return
                connection = raw.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc.orig!r}"
            ) from exc

    @contextmanager
    def write(self, *, blocking: bool = True) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        ``blocking=False`` raises WriterBusyError at once when another writer is busy (SQLite),
        for callers on the event loop that would rather hand the work to a thread than wait.
        Work whose caller stopped waiting (``db/deadline.py``) neither starts nor commits.
        """
        deadline.check("a write")
        try:
            # The connection is checked out before the writer turn and returned after it: the
            # turn (SQLite's one write lock, which every worker's audit commits wait for) is
            # held only from BEGIN to COMMIT.
            with self.engine.connect() as raw, self._writer_turn(blocking):
                connection = raw.execution_options(**{_WRITE_OPTION: True})
                raw.info.pop(counters.BUMPED, None)  # what another transaction left
                try:
                    with connection.begin():
                        yield connection
                        # The caller may have answered 503 meanwhile: roll back, not commit.
                        deadline.check("a write")
                finally:
                    # The DBAPI connection's record outlives this checkout: always taken.
                    bumped: dict[str, int] = raw.info.pop(counters.BUMPED, {})
                for name, value in bumped.items():
                    for listener in self.counter_listeners:
                        listener(name, value)
        except OperationalError as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc.orig!r}"
            ) from exc
        except DRIVER_OPERATIONAL_ERRORS as exc:  # from statements run at driver level
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc!r}"
            ) from exc

    def _writer_turn(self, blocking: bool) -> AbstractContextManager[None]:
        return self._writers.held(blocking=blocking) if self._writers is not None else nullcontext()

    def checkpoint(self) -> tuple[int, int]:
        """Move committed WAL pages into the database file without blocking anyone (SQLite).

        Returns (frames in the WAL, frames now in the database file); (0, 0) elsewhere.
        """
        if self.dialect != "sqlite":
            return 0, 0
        with self.engine.connect() as connection:
            row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        busy, in_wal, moved = (int(value) for value in row)
        return (0, 0) if busy else (in_wal, moved)

    def restart_wal(self, *, blocking: bool = False) -> bool:
        """Start the WAL file over now, in the caller's thread (SQLite, after a checkpoint
        that moved every frame); return whether it ran (``blocking=False``: not when another
        writer holds the write turn).

        The first commit after a complete checkpoint restarts the WAL and, with
        ``synchronous=NORMAL``, fsyncs its header (a power loss must not reorder the new frames
        before it). Whichever request made that commit waited for the fsync: up to 14 ms on
        the event loop of a worker during a burst of logins (``perf sched``, bench/login.py).
        A write of nothing new (``user_version`` set to itself: the one page it touches is the
        database header) takes that turn here instead.
        """
        try:
            with self.write(blocking=blocking) as connection:
                version = int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
                connection.exec_driver_sql(f"PRAGMA user_version = {version}")
        except WriterBusyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()


class Checkpointer:
    """Runs SQLite WAL checkpoints in a background thread, every ``interval`` seconds."""

    def __init__(self, database: Database, interval: float = 0.5) -> None:
        self._database = database
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        if self._database.dialect == "sqlite":
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                in_wal, moved = self._database.checkpoint()
                # Every frame is in the database file: the next commit would restart the WAL
                # and wait for an fsync. Restart it here, off every request's path. One frame
                # is such a restart's own (or a write too small to matter): left alone, so
                # that checkpointers of an idle server do not restart the WAL for each other.
                if in_wal > 1 and moved == in_wal:
                    self._database.restart_wal()
            except Exception as exc:  # a failed checkpoint is retried on the next tick
                log.warning("wal checkpoint failed", error=repr(exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
