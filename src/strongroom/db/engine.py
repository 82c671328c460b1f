"""The database boundary: one engine per process, read connections and write transactions.

Work is synchronous SQLAlchemy Core. On the read path it runs inline on the event loop: a
SQLite query costs microseconds, far less than the hop to a thread pool (measured in
``bench/``). Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so that two workers
never both read and then fail to upgrade to a write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from strongroom.errors import ConfigurationError, ServiceUnavailableError

_WRITE_OPTION = "strongroom_write"


def make_engine(database_url: str) -> Engine:
    """Create the engine for ``database_url`` (``sqlite:///…`` or ``postgresql+psycopg://…``)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(database_url, url.database)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() not in ("psycopg", ""):
            raise ConfigurationError(
                "PostgreSQL URLs use the psycopg driver: postgresql+psycopg://user@host/db"
            )
        url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise ConfigurationError(
        f"unsupported database {url.get_backend_name()!r}: use sqlite:///path or "
        "postgresql+psycopg://user@host/db"
    )


def _make_sqlite_engine(database_url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


class Database:
    """Hands out connections; the only owner of the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, database_url: str) -> Database:
        return cls(make_engine(database_url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; its implicit transaction is rolled back at the end."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except OperationalError as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc.orig!r}"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.engine.connect() as raw:
                connection = raw.execution_options(**{_WRITE_OPTION: True})
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"database error: {exc.orig!r}"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()
