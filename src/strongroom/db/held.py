"""One driver connection held open in autocommit, for single-statement reads on a hot path.

Through SQLAlchemy a one-row read pays for a pool checkout, BEGIN, statement building and a
rollback: about 87 µs against 6.5 µs on a held driver connection (``bench/read_path_steps.py``).
A :class:`HeldConnection` is that held connection. Its contract:

- each statement is a read that needs no snapshot shared with another statement (autocommit:
  no BEGIN, no ROLLBACK), and tolerates a concurrent writer;
- one owner thread at a time (the event loop of a worker, or the loop that runs logins);
- the connection can never write: SQLite opens it ``query_only``, and PostgreSQL statements
  are plain SELECTs written in this code base;
- a dropped connection (server restart, failover) is reopened once; a second failure raises
  ServiceUnavailableError (503), never a driver error.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from strongroom.errors import ServiceUnavailableError


class HeldConnection:
    """A lazily opened autocommit driver connection on the engine's database."""

    def __init__(self, engine: Engine, *, purpose: str) -> None:
        """``purpose`` names the reads in the reason of a 503 (e.g. "hot read")."""
        self._engine = engine
        self._purpose = purpose
        self.sqlite = engine.dialect.name == "sqlite"
        self.placeholder = "?" if self.sqlite else "%s"
        self._connection: Any = None

    def _connect(self) -> Any:
        if self.sqlite:
            database = self._engine.url.database or ":memory:"
            # One owner thread at a time (see the module's contract); autocommit: no BEGIN.
            connection = sqlite3.connect(
                database, isolation_level=None, check_same_thread=False, timeout=10
            )
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA query_only=1")  # this connection can never write
            return connection
        url = self._engine.url.set(drivername="postgresql")
        return psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True, prepare_threshold=0
        )

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of one read statement written with :attr:`placeholder` placeholders."""
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._connect()
                cursor = self._connection.execute(sql, params)
                return list(cursor.fetchall())
            except (sqlite3.OperationalError, psycopg.OperationalError, OSError) as exc:
                # A dropped connection (server restart, failover): reconnect once, then give up.
                self.close()
                if attempt == 2:
                    raise ServiceUnavailableError(
                        "the database is unavailable", reason=f"{self._purpose} failed: {exc!r}"
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection (the next read reopens it)."""
        if self._connection is not None:
            # Closing a broken connection may fail; it is discarded either way.
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None


class PooledRows:
    """The reads of a :class:`HeldConnection`, on a connection of the engine's pool taken for
    each statement: for reads made from any thread (PostgreSQL's logins, which run on the
    threads of ``db/work.py``). Same failures: ServiceUnavailableError, never a driver error."""

    def __init__(self, engine: Engine, *, purpose: str) -> None:
        self._engine = engine
        self._purpose = purpose
        self.placeholder = "?" if engine.dialect.name == "sqlite" else "%s"

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of one read statement written with :attr:`placeholder` placeholders."""
        try:
            connection = self._engine.raw_connection()  # pool_pre_ping: a dropped one is replaced
            try:
                cursor = connection.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                connection.close()  # back to the pool, rolled back
        except (SQLAlchemyError, psycopg.OperationalError, sqlite3.OperationalError) as exc:
            raise ServiceUnavailableError(
                "the database is unavailable", reason=f"{self._purpose} failed: {exc!r}"
            ) from exc

    def close(self) -> None:
        """Nothing is held."""


# What single-statement driver reads run on: a held connection (one owner thread), or pooled
# connections taken per statement (reads from any thread). Both offer ``placeholder`` and
# ``rows``.
DriverRows = HeldConnection | PooledRows
