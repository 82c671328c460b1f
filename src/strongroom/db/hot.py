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
  database that does not answer costs the request a 503 after ``DB_TIMEOUT_SECONDS``. In front
  of it, :class:`KeptVersionRows` keeps the rows it read for as long as the change feed
  vouches that no item changed (``READ_CACHE_MB``; ``db/counters.py``), as Vault and OpenBao
  keep storage entries in memory: a read of a kept row makes no round trip at all.

Autocommit is safe here: each statement is a single read that needs no snapshot shared with
another, and both tolerate a concurrent writer (the generation check only ever makes a cache
fresher).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from strongroom.db import driver
from strongroom.db.change_feed import ChangeFeed
from strongroom.db.counters import SECRETS
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


# What a kept row costs beyond its ciphertext and name (the tuple, the key, the dict entry).
_ROW_OVERHEAD_BYTES = 400


class KeptVersionRows:
    """Item-version rows kept in memory for one value of the ``secrets`` counter.

    Contract: a row is answered from memory only while the change feed vouches for the
    counter (``ChangeFeed.value``, which also checks for a notification not read yet) and the
    counter has the value the row was kept under; any change to an item or a version bumps it
    in its own transaction (``secrets/repository.py``), so every replica drops what it kept
    as soon as it hears of it, and at the latest when a heartbeat could no longer vouch
    (``db/change_feed.py``: the bound of SPEC section 11). While the feed cannot vouch, every
    read reads its row. A row read while the counter moved is not kept: it may be older than
    the change. Rows are ciphertexts, as stored (a value is only ever decrypted per read);
    at most ``max_bytes`` of them are kept, the least recently read dropped first. A missing
    item is never kept (nothing to drop when it is created).
    """

    def __init__(self, rows: HotReads, feed: ChangeFeed, *, max_bytes: int) -> None:
        self._rows = rows
        self._feed = feed
        self._max_bytes = max_bytes
        self._kept: OrderedDict[tuple[str, int | None], VersionRow] = OrderedDict()
        self._kept_bytes = 0
        self._counter: int | None = None  # the value of "secrets" that _kept is valid for

    async def generation(self) -> int:
        return await self._rows.generation()

    async def version_row(self, name: str, version: int | None) -> VersionRow | None:
        counter = self._feed.value(SECRETS)
        if counter is None:  # nobody vouches for what was kept: read the row
            return await self._rows.version_row(name, version)
        if counter != self._counter:
            self._drop_all()
            self._counter = counter
        key = (name, version)
        row = self._kept.get(key)
        if row is not None:
            self._kept.move_to_end(key)
            return row
        row = await self._rows.version_row(name, version)
        # Kept only if no change was heard while the row was read (this or another request
        # may have moved _counter meanwhile; the feed may have heard one not seen here yet).
        if row is not None and self._counter == counter and self._feed.value(SECRETS) == counter:
            self._keep(key, row)
        return row

    def _keep(self, key: tuple[str, int | None], row: VersionRow) -> None:
        size = len(row[3]) + len(row[1]) + _ROW_OVERHEAD_BYTES
        if size > self._max_bytes:
            return
        self._kept[key] = row
        self._kept_bytes += size
        while self._kept_bytes > self._max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._kept_bytes -= len(dropped[3]) + len(dropped[1]) + _ROW_OVERHEAD_BYTES

    def _drop_all(self) -> None:
        self._kept.clear()
        self._kept_bytes = 0

    async def open(self) -> None:
        await self._rows.open()

    async def aclose(self) -> None:
        self._drop_all()
        await self._rows.aclose()


def hot_reads(
    engine: Engine,
    *,
    timeout: float,
    feed: ChangeFeed | None = None,
    keep_bytes: int = 0,
) -> HotReads:
    """SQLite's inline reader, or PostgreSQL's asynchronous one, behind the rows it keeps when
    there is a change feed and ``keep_bytes`` > 0 (module docstring)."""
    if engine.dialect.name == "sqlite":
        return HotReader(engine)
    reader = PooledHotReader(engine, timeout=timeout)
    if feed is None or keep_bytes <= 0:
        return reader
    return KeptVersionRows(reader, feed, max_bytes=keep_bytes)
