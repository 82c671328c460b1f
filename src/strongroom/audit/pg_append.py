"""PostgreSQL group commits of audit events as asynchronous I/O, several batches at once.

The read and denial events of a worker (``audit/writer.py``) are appended here on PostgreSQL:
on the event loop, through a pool of autocommit connections (``db/pg_async.py``), with no
thread hop and no transaction of several statements. A batch is one statement, one round trip:
it moves the writer's head on, inserts the events (one JSON parameter), commits, and draws as
many new global ids from the ``audit_events_seq`` sequence as the batch used.

The links cover each event's global id, so a batch's ids must be known before its statement
is sent: they come from :class:`IdReserve`, ids drawn by earlier statements of this process
(a round trip of their own only when the reserve runs short). Ids in the reserve are used
within :data:`ID_RESERVE_SECONDS` of being drawn, or dropped: an event's id is never much
older than the event. Ids therefore order events only roughly, across processes as across
replicas; listings order by time, then id (``audit/store.query_events``).

Each batch in flight uses a writer of its own (``audit/chain.py``), opened for this
appender alone (:meth:`~strongroom.audit.store.Appender.open_owned`): no other transaction
ever appends to it, so this process knows its head, and the links are computed from that head
before the statement is sent. The statement still checks it: the head moves only if it is
still exactly the one the links were computed from (its position and link, and not closed),
and the events are inserted only together with that move. When the head is not as expected,
nothing is written and the batch fails (503, fail closed); the writer's head is then read
back from the database before its next batch, as after any failure whose outcome is unknown
(an answer lost with a broken connection: the batch may have committed).

Every batch is bounded by ``DB_TIMEOUT_SECONDS``; a failure of any kind is
ServiceUnavailableError for the whole batch.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine

from strongroom.audit.event import AuditEvent
from strongroom.audit.store import RECORD_COLUMNS, Appender
from strongroom.db.engine import Database
from strongroom.db.pg_async import Connection, PooledReads
from strongroom.errors import ServiceUnavailableError

_IDS = "SELECT ARRAY(SELECT nextval('audit_events_seq') FROM generate_series(1, %s))"
_HEAD = "SELECT seq, hash, closed FROM audit_heads WHERE id = %s"
_RECORD_TYPES = {"status": "integer"}


# Built only from constants. The head moves, and the events go in, only if the head is the
# one the links were computed from. The events come as one JSON array of objects, a key per
# column: one parameter, serialized in C, where an array per column cost a parameter each and
# most of the batch's time in Python (one statement whatever the batch's size).
def _append_sql() -> str:
    records = ", ".join(RECORD_COLUMNS)
    typed = ", ".join(f"{name} {_RECORD_TYPES.get(name, 'text')}" for name in RECORD_COLUMNS)
    selected = ", ".join(f"e.{name}" for name in RECORD_COLUMNS)
    return (
        "WITH head AS (UPDATE audit_heads SET seq = seq + %s, hash = %s "  # noqa: S608
        "WHERE id = %s AND seq = %s AND hash = %s AND NOT closed RETURNING id), "
        "added AS ("
        f"INSERT INTO audit_events (seq, writer, writer_seq, time, {records}, prev_hash, hash) "
        f"SELECT e.seq, head.id, e.writer_seq, e.time, {selected}, e.prev_hash, e.hash "
        f"FROM head, json_to_recordset(%s::json) AS e(seq bigint, writer_seq bigint, "
        f"time timestamptz, {typed}, prev_hash text, hash text) RETURNING 1) "
        "SELECT (SELECT count(*) FROM added), "
        "ARRAY(SELECT nextval('audit_events_seq') FROM generate_series(1, %s))"
    )


_APPEND = _append_sql()


# Ids kept ahead of need, beyond the batch that draws them; and how long they stay usable.
ID_RESERVE = 32
ID_RESERVE_SECONDS = 1.0


class IdReserve:
    """Global event ids drawn ahead by this process, used in order, young enough to use.

    ``now`` values are ``time.monotonic()`` (passed in: the core is pure). The loop is the
    only user: taking never awaits, so batches in flight never share an id."""

    def __init__(self, max_age: float = ID_RESERVE_SECONDS) -> None:
        self._ids: deque[int] = deque()
        self._drawn_at = -math.inf
        self._max_age = max_age

    def take(self, count: int, now: float) -> list[int] | None:
        """``count`` ids, or None when the reserve is short (draw more, then ``add``)."""
        if now - self._drawn_at > self._max_age:
            self._ids.clear()
        if len(self._ids) < count:
            return None
        return [self._ids.popleft() for _ in range(count)]

    def add(self, ids: Sequence[int], now: float) -> None:
        if now - self._drawn_at > self._max_age:
            self._ids.clear()  # what is left is too old to keep beside these
        self._ids.extend(sorted(ids))
        self._drawn_at = now


class HeadMismatchError(Exception):
    """The writer's head in the database is not the one this process expected."""


@dataclass(slots=True)
class _Head:
    writer: int
    seq: int
    hash: str
    known: bool = True  # False: read it back before the next batch
    gone: bool = False  # closed or missing in the database: never used again


class AsyncAppender:
    """Appends batches of events to writers of its own, on the running loop (module contract).

    One per worker process, used from its event loop. ``max_in_flight`` batches at most run at
    once (each holds a writer and a pooled connection)."""

    def __init__(
        self,
        database: Database,
        appender: Appender,
        *,
        timeout: float,
        max_in_flight: int,
    ) -> None:
        engine: Engine = database.engine
        self._database = database
        self._appender = appender
        self.max_in_flight = max_in_flight
        self._connections = PooledReads(
            engine.url,
            timeout=timeout,
            purpose="audit append",
            min_size=1,
            max_size=max_in_flight,
        )
        self._free: list[_Head] = []
        self._ids = IdReserve()

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Store ``events`` (committed when this returns); ServiceUnavailableError if not."""
        head = self._free.pop() if self._free else await self._open()
        try:
            await self._connections.run(lambda connection: self._append(connection, head, events))
        except BaseException:
            head.known = False  # it may or may not have moved: read it back next time
            raise
        finally:
            if not head.gone:
                self._free.append(head)

    async def _open(self) -> _Head:
        """A new writer of this appender (a registry entry: in a thread, bounded like any
        other database work by the engine's timeouts)."""

        def register() -> tuple[int, str]:
            with self._database.write() as connection:
                return self._appender.open_owned(connection)

        try:
            writer, genesis = await asyncio.to_thread(register)
        except Exception as exc:
            raise ServiceUnavailableError(
                "the audit trail cannot be written", reason=f"audit writer open failed: {exc!r}"
            ) from exc
        return _Head(writer, 0, genesis)

    async def _append(
        self, connection: Connection, head: _Head, events: Sequence[AuditEvent]
    ) -> None:
        if not head.known:
            cursor = await connection.execute(_HEAD, (head.writer,))
            row = await cursor.fetchone()
            if row is None or row[2]:
                head.gone = True
                raise HeadMismatchError(f"audit writer {head.writer} is gone or closed")
            head.seq, head.hash, head.known = int(row[0]), str(row[1]), True
        count = len(events)
        ids = self._ids.take(count, time.monotonic())
        if ids is None:  # short: a round trip for this batch's ids and a reserve
            cursor = await connection.execute(_IDS, (count + ID_RESERVE,))
            drawn = await cursor.fetchone()
            self._ids.add([int(i) for i in drawn[0]] if drawn else [], time.monotonic())
            ids = self._ids.take(count, time.monotonic())
            if ids is None:
                raise HeadMismatchError("the audit event ids were not drawn")
        key = self._appender.key
        writer = head.writer
        position = head.seq
        prev_hash = head.hash
        rows: list[dict[str, Any]] = []
        for seq, event in zip(ids, events, strict=True):
            position += 1
            record = event.record()
            link = key.writer_link(writer, position, seq, prev_hash, record)
            row = {name: record[name] for name in RECORD_COLUMNS}
            row.update(
                seq=seq, writer_seq=position, time=event.time, prev_hash=prev_hash, hash=link
            )
            rows.append(row)
            prev_hash = link
        cursor = await connection.execute(
            _APPEND,
            (count, prev_hash, writer, head.seq, head.hash, orjson.dumps(rows).decode(), count),
        )
        added = await cursor.fetchone()
        if added is None or int(added[0]) != count:
            raise HeadMismatchError(f"audit writer {writer}'s head moved behind this process")
        head.seq, head.hash = position, prev_hash
        self._ids.add([int(i) for i in added[1]], time.monotonic())

    async def aclose(self) -> None:
        await self._connections.aclose()
