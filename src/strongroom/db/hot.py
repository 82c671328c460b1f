"""The two queries every secret read runs, at driver level: the seam between the databases.

A read needs the cache ``generation`` (unless the change feed vouches for it, see
``db/change_feed.py``) and one item-version row. :class:`HotReads` is what the services see;
:func:`hot_reads` picks its implementation:

- SQLite: :class:`HotReader`, a :class:`~strongroom.db.held.HeldConnection` used inline on
  the worker's event loop (about 6.5 µs a statement against 87 µs through SQLAlchemy). The
  methods are coroutines only in name: they never suspend, so a read pays no thread hop and no
  wait, just the call.
- PostgreSQL: :class:`PooledHotReader`, asynchronous statements on a pool of connections
  (``db/pg_async.py``): while a round trip is under way the loop serves other requests, and a
  database that does not answer costs the request a 503 after ``DB_TIMEOUT_SECONDS``.

Autocommit is safe here: each statement is a single read that needs no snapshot shared with
another, and both tolerate a concurrent writer (the generation check only ever makes a cache
fresher).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from strongroom.db import driver
from strongroom.db.held import HeldConnection
from strongroom.db.pg_async import PooledReads

GENERATION_SQL = "SELECT value FROM counters WHERE name = 'generation'"
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


class HotReads(Protocol):
    """The hot path's reads; one instance per worker process."""

    async def generation(self) -> int:
        """The cache generation counter (bumped by every RBAC or token change)."""
        ...

    async def version_row(self, name: str, version: int | None) -> VersionRow | None:
        """``(item_id, name, version, ciphertext, created_at)`` of the newest or given version."""
        ...

    async def open(self) -> None:
        """Get ready on the running loop (optional: the first read does it too)."""
        ...

    async def aclose(self) -> None: ...


def _version_row(rows: list[Any]) -> VersionRow | None:
    if not rows:
        return None
    item_id, item_name, number, ciphertext, created_at = rows[0]
    return item_id, item_name, number, bytes(ciphertext), driver.loaded_time(created_at)


class HotReader:
    """SQLite's hot reads: a held connection, inline on the caller's thread (never suspends)."""

    def __init__(self, engine: Engine) -> None:
        self._held = HeldConnection(engine, purpose="hot read")
        placeholder = self._held.placeholder
        self._newest = _NEWEST.format(p=placeholder)
        self._exact = _EXACT.format(p=placeholder)

    async def generation(self) -> int:
        return int(self._held.rows(GENERATION_SQL)[0][0])

    async def version_row(self, name: str, version: int | None) -> VersionRow | None:
        return _version_row(
            self._held.rows(self._newest, (name,))
            if version is None
            else self._held.rows(self._exact, (name, version))
        )

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        self._held.close()


class PooledHotReader:
    """PostgreSQL's hot reads: asynchronous, pooled, bounded by the timeout (``pg_async``)."""

    def __init__(self, engine: Engine, *, timeout: float) -> None:
        self._reads = PooledReads(engine.url, timeout=timeout, purpose="hot read")
        self._newest = _NEWEST.format(p="%s")
        self._exact = _EXACT.format(p="%s")

    async def generation(self) -> int:
        return int((await self._reads.rows(GENERATION_SQL))[0][0])

    async def version_row(self, name: str, version: int | None) -> VersionRow | None:
        return _version_row(
            await self._reads.rows(self._newest, (name,))
            if version is None
            else await self._reads.rows(self._exact, (name, version))
        )

    async def open(self) -> None:
        await self._reads.open()

    async def aclose(self) -> None:
        await self._reads.aclose()


def hot_reads(engine: Engine, *, timeout: float) -> HotReads:
    """SQLite's inline reader, or PostgreSQL's asynchronous one (module docstring)."""
    if engine.dialect.name == "sqlite":
        return HotReader(engine)
    return PooledHotReader(engine, timeout=timeout)
