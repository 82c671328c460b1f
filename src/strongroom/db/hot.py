"""The two queries every secret read runs, at driver level.

A read needs the cache ``generation`` and one item-version row. Through SQLAlchemy (pool
checkout, BEGIN, statement building, rollback) those cost about 87 µs; on a held driver
connection in autocommit, about 6.5 µs (``bench/read_path_steps.py``). So each worker keeps one
driver connection for them, used only from the event-loop thread, and everything else stays on
SQLAlchemy Core.

Autocommit is safe here: each statement is a single read that needs no snapshot shared with
another, and both tolerate a concurrent writer (the generation check only ever makes a cache
fresher).
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine

from strongroom.errors import ServiceUnavailableError

_GENERATION = "SELECT value FROM counters WHERE name = 'generation'"
_NEWEST = (
    "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
    "item_versions.created_at FROM items JOIN item_versions ON item_versions.item_id = items.id "
    "WHERE items.name = {p} ORDER BY item_versions.version DESC LIMIT 1"
)
_EXACT = (
    "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
    "item_versions.created_at FROM items JOIN item_versions ON item_versions.item_id = items.id "
    "WHERE items.name = {p} AND item_versions.version = {p}"
)

VersionRow = tuple[int, str, int, bytes, datetime]


class HotReader:
    """Driver-level reads for the request hot path; one instance per worker process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        placeholder = "?" if self._sqlite else "%s"
        self._newest = _NEWEST.format(p=placeholder)
        self._exact = _EXACT.format(p=placeholder)
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._sqlite:
            database = self._engine.url.database or ":memory:"
            # Used only from the event-loop thread; autocommit: no BEGIN, no ROLLBACK.
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

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = self._connect()
                cursor = self._connection.execute(sql, params)
                return list(cursor.fetchall())
            except (sqlite3.OperationalError, psycopg.OperationalError, OSError) as exc:
                # A dropped connection (server restart, failover): reconnect once, then give up.
                self._reset()
                if attempt == 2:
                    raise ServiceUnavailableError(
                        "the database is unavailable", reason=f"hot read failed: {exc!r}"
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _reset(self) -> None:
        if self._connection is not None:
            # Closing a broken connection may fail; it is discarded either way.
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def generation(self) -> int:
        """The cache generation counter (bumped by every RBAC or token change)."""
        return int(self._execute(_GENERATION, ())[0][0])

    def version_row(self, name: str, version: int | None) -> VersionRow | None:
        """``(item_id, name, version, ciphertext, created_at)`` of the newest or given version."""
        rows = (
            self._execute(self._newest, (name,))
            if version is None
            else self._execute(self._exact, (name, version))
        )
        if not rows:
            return None
        item_id, item_name, number, ciphertext, created_at = rows[0]
        if isinstance(created_at, str):  # SQLite keeps naive UTC text
            created_at = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        return item_id, item_name, number, bytes(ciphertext), created_at

    def close(self) -> None:
        self._reset()
