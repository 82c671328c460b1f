"""Storage of audit events: appends to this process's writers, the registry, the anchor, queries.

:class:`Appender` is the one place that writes event links, :func:`append_entry` the one that
writes registry entries (their formats, and what verification detects: ``audit/chain.py``;
verification itself: ``audit/verification.py``).

An append runs inside the caller's write transaction and is stored once that commits:

1. One statement takes a writer of this process and moves its head on by the batch. On
   PostgreSQL it is any of the process's writers that no other transaction holds (``FOR UPDATE
   SKIP LOCKED``: two transactions of one process never wait for each other either), and the
   same statement draws the batch's global ids from the ``audit_events_seq`` sequence. On
   SQLite, whose one write lock already orders every append of every process, it is the
   process's writer, and the ids follow the largest stored.
2. The events go in with their links (one ``executemany``), then the head takes the last link.

When the process has no writer free (its first append, or every one is in use by another of its
transactions) step 1 opens one first, in the same transaction: an ``open`` entry in the registry
and a head row. That locks the registry's head row, the one row that appends of different
processes can meet on, once per writer. A registration that rolls back with its transaction
leaves nothing behind; writer ids are random, so that an id this process remembers from a
registration that rolled back never names another process's writer.

:meth:`Appender.close` closes the process's writers when it stops: a ``close`` entry in the
registry records where each chain ends, and the head is marked closed (appends skip it).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, insert, select, update

from strongroom.audit.chain import GENESIS_HASH, ChainKey, entry_record
from strongroom.audit.event import AuditEvent, isoformat_micro
from strongroom.db import driver
from strongroom.db.engine import Database
from strongroom.db.tables import audit_anchor, audit_events, audit_heads, audit_registry
from strongroom.errors import ServiceUnavailableError
from strongroom.kit.clock import utc_now

log = structlog.get_logger("strongroom.audit")

REGISTRY = 0  # the audit_heads row of the registry
LEGACY_WRITER = 1  # the single chain of versions before per-writer chains
# Writer ids are drawn from [FIRST_RANDOM_WRITER, 2**62): never 0 or 1, and fit a BIGINT.
FIRST_RANDOM_WRITER = 2
LABEL_LENGTH = 200

_INSERT_COLUMNS = (
    "seq",
    "writer",
    "writer_seq",
    "time",
    "request_id",
    "source_ip",
    "access_id",
    "auth_method",
    "identity_arn",
    "token_digest",
    "action",
    "path",
    "status",
    "outcome",
    "reason",
    "prev_hash",
    "hash",
)
# The event's fields as stored (besides time and the chain's): what its link covers.
RECORD_COLUMNS = _INSERT_COLUMNS[4:-2]

# Built only from constants. RETURNING: the writer, its head before the batch (once moved on),
# and where the batch's global ids start (SQLite) or the ids themselves (PostgreSQL).
_SQLITE_TAKE = (
    "UPDATE audit_heads SET seq = seq + ? WHERE id = ? AND NOT closed "
    "RETURNING id, seq, hash, (SELECT coalesce(max(seq), 0) FROM audit_events)"
)
_POSTGRES_TAKE_FREE = (
    "UPDATE audit_heads SET seq = seq + %s WHERE id = ("
    "SELECT id FROM audit_heads WHERE id = ANY(%s) AND NOT closed "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING id, seq, hash, "
    "(SELECT array_agg(nextval('audit_events_seq')) FROM generate_series(1, %s))"
)
_POSTGRES_TAKE = (
    "UPDATE audit_heads SET seq = seq + %s WHERE id = %s AND NOT closed "
    "RETURNING id, seq, hash, "
    "(SELECT array_agg(nextval('audit_events_seq')) FROM generate_series(1, %s))"
)


def _insert_sql(p: str) -> str:
    columns = ", ".join(_INSERT_COLUMNS)
    values = ", ".join([p] * len(_INSERT_COLUMNS))
    return f"INSERT INTO audit_events ({columns}) VALUES ({values})"  # noqa: S608


_SQLITE_INSERT = _insert_sql("?")
_POSTGRES_INSERT = _insert_sql("%s")
_SQLITE_SET_HEAD = "UPDATE audit_heads SET hash = ? WHERE id = ?"
_POSTGRES_SET_HEAD = "UPDATE audit_heads SET hash = %s WHERE id = %s"


def default_label() -> str:
    """Which process a writer belongs to, as the registry records it."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


class Appender:
    """This process's side of the audit chains: the writers it opened, the key it links
    under, and the label the registry gives its writers. Thread-safe; create one per process
    (after a fork: a child must not append to its parent's writers)."""

    def __init__(self, key: ChainKey, label: str | None = None) -> None:
        self.key = key
        self._label = label
        self._lock = threading.Lock()
        self._writers: list[int] = []  # newest last; may name writers rolled back or closed
        # Writers whose heads a caller keeps (open_owned): closed here, never taken by append.
        self._owned: list[int] = []

    @property
    def writers(self) -> tuple[int, ...]:
        """The writers this process opened and has not closed (some may have rolled back)."""
        with self._lock:
            return tuple(self._writers)

    def append(self, connection: Connection, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` to one of this process's chains, inside the caller's write
        transaction; they count as stored only once it commits. Any failure raises
        ServiceUnavailableError, and the caller's transaction must then roll back.

        Three driver-level statements per batch rather than SQLAlchemy's statement
        machinery, which cost ten times as much here (``bench/read_path_steps.py``)."""
        if not events:
            return
        try:
            self._append(connection, events)
        except ServiceUnavailableError:
            raise
        except Exception as exc:  # whatever the driver raised, the trail was not written
            raise ServiceUnavailableError(
                "the audit trail cannot be written", reason=f"audit append failed: {exc!r}"
            ) from exc

    def _append(self, connection: Connection, events: Sequence[AuditEvent]) -> None:
        sqlite = driver.is_sqlite(connection)
        count = len(events)
        cursor = driver.cursor(connection)
        try:
            taken = self._take(cursor, sqlite, count)
            if taken is None:
                writer = self._open(connection)
                cursor.execute(
                    _SQLITE_TAKE if sqlite else _POSTGRES_TAKE,
                    (count, writer) if sqlite else (count, writer, count),
                )
                taken = cursor.fetchone()
                if taken is None:  # a head inserted by this very transaction
                    raise ServiceUnavailableError(
                        "the audit trail cannot be written",
                        reason=f"audit writer {writer} vanished while it opened",
                    )
            writer, head, prev_hash, ids_found = taken
            writer = int(writer)
            position = int(head) - count
            if sqlite:
                ids = list(range(int(ids_found) + 1, int(ids_found) + count + 1))
            else:
                ids = sorted(int(i) for i in ids_found)
            rows: list[tuple[Any, ...]] = []
            for seq, event in zip(ids, events, strict=True):
                position += 1
                record = event.record()
                link = self.key.writer_link(writer, position, seq, prev_hash, record)
                rows.append(
                    (
                        seq,
                        writer,
                        position,
                        driver.stored_time(connection, event.time),
                        *(record[name] for name in RECORD_COLUMNS),
                        prev_hash,
                        link,
                    )
                )
                prev_hash = link
            cursor.executemany(_SQLITE_INSERT if sqlite else _POSTGRES_INSERT, rows)
            cursor.execute(_SQLITE_SET_HEAD if sqlite else _POSTGRES_SET_HEAD, (prev_hash, writer))
        finally:
            cursor.close()

    def _take(self, cursor: Any, sqlite: bool, count: int) -> tuple[Any, ...] | None:
        """Move one of this process's free writers on by ``count``: (writer, head, link, ids),
        or None when none is free."""
        with self._lock:
            writers = list(self._writers)
        if not writers:
            return None
        if sqlite:
            # One write transaction at a time: the newest writer is always free.
            cursor.execute(_SQLITE_TAKE, (count, writers[-1]))
        else:
            cursor.execute(_POSTGRES_TAKE_FREE, (count, writers, count))
        row: tuple[Any, ...] | None = cursor.fetchone()
        if row is None and sqlite:
            self._forget([writers[-1]])  # closed, or its registration rolled back
        return row

    def _open(self, connection: Connection) -> int:
        """Open a writer in the caller's transaction: its registry entry and its head."""
        writer, _ = self._register(connection)
        with self._lock:
            self._writers.append(writer)
        return writer

    def open_owned(self, connection: Connection) -> tuple[int, str]:
        """Open a writer in the caller's transaction for a caller that keeps its head itself
        (``audit/pg_append.py``): :meth:`append` never takes it, :meth:`close` closes it.
        Returns the writer and its first ``prev_hash`` (its head's link, at position 0)."""
        writer, genesis = self._register(connection)
        with self._lock:
            self._owned.append(writer)
        return writer, genesis

    def _register(self, connection: Connection) -> tuple[int, str]:
        writer = FIRST_RANDOM_WRITER + secrets.randbelow(2**62 - FIRST_RANDOM_WRITER)
        label = (self._label or default_label())[:LABEL_LENGTH]
        genesis = append_entry(connection, self.key, "open", writer, label=label)
        connection.execute(insert(audit_heads).values(id=writer, seq=0, hash=genesis, closed=False))
        return writer, genesis

    def _forget(self, writers: Sequence[int]) -> None:
        with self._lock:
            self._writers = [w for w in self._writers if w not in writers]

    def close(self, database: Database) -> int:
        """Close this process's writers (at its end): record in the registry where each
        chain ends. Returns how many were closed. Appends after it open new writers.

        A failure is logged, not raised: the writers stay open, as a process that was killed
        leaves them, which verification accepts."""
        with self._lock:
            writers, self._writers = self._writers + self._owned, []
            self._owned = []
        if not writers:
            return 0
        try:
            with database.write() as connection:
                closed = sum(close_writer(connection, self.key, w) for w in writers)
        except Exception as exc:  # the database is gone at shutdown: left open, not lost
            log.warning("audit writers left open", writers=len(writers), error=repr(exc))
            return 0
        return closed


def append_entry(
    connection: Connection,
    key: ChainKey,
    kind: str,
    writer: int,
    *,
    label: str | None = None,
    end: tuple[int, str] | None = None,
) -> str:
    """Append an entry to the registry in the caller's transaction (locking its head row until
    it ends); returns the entry's link. ServiceUnavailableError if the registry has not been
    started (:func:`seal_anchor`) and this is not its first entry, ``legacy``."""
    row = connection.execute(
        update(audit_heads)
        .where(audit_heads.c.id == REGISTRY)
        .values(seq=audit_heads.c.seq + 1)
        .returning(audit_heads.c.seq, audit_heads.c.hash)
    ).first()
    if row is None or (int(row.seq) == 1) != (kind == "legacy"):
        raise ServiceUnavailableError(
            "the audit trail cannot be written",
            reason="the audit registry is missing or not started (the chain is not anchored)",
        )
    position, prev_hash = int(row.seq), str(row.hash)
    time = isoformat_micro(utc_now())
    end_seq, end_hash = end if end is not None else (None, None)
    link = key.entry(
        position, prev_hash, entry_record(kind, writer, time, label, end_seq, end_hash)
    )
    connection.execute(
        insert(audit_registry).values(
            seq=position,
            time=time,
            kind=kind,
            writer=writer,
            label=label,
            end_seq=end_seq,
            end_hash=end_hash,
            prev_hash=prev_hash,
            hash=link,
        )
    )
    connection.execute(update(audit_heads).where(audit_heads.c.id == REGISTRY).values(hash=link))
    return link


def close_writer(connection: Connection, key: ChainKey, writer: int) -> bool:
    """Close ``writer`` in the caller's transaction, after any append to it still in flight
    (its head row is locked first); False if it was closed already or does not exist."""
    head = connection.execute(
        select(audit_heads.c.seq, audit_heads.c.hash, audit_heads.c.closed)
        .where(audit_heads.c.id == writer)
        .with_for_update()
    ).first()
    if head is None or head.closed:
        return False
    append_entry(connection, key, "close", writer, end=(int(head.seq), str(head.hash)))
    connection.execute(update(audit_heads).where(audit_heads.c.id == writer).values(closed=True))
    return True


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the unkeyed chain ends (see ``audit/chain.py``); unsealed until a server seals it."""

    seq: int
    hash: str
    anchored_at: str | None
    seal: str | None


def read_anchor(connection: Connection) -> Anchor | None:
    row = connection.execute(
        select(
            audit_anchor.c.seq, audit_anchor.c.hash, audit_anchor.c.anchored_at, audit_anchor.c.seal
        ).where(audit_anchor.c.id == 1)
    ).first()
    return None if row is None else Anchor(int(row.seq), row.hash, row.anchored_at, row.seal)


def _registry_started(connection: Connection) -> bool:
    seq = connection.execute(select(audit_heads.c.seq).where(audit_heads.c.id == REGISTRY)).scalar()
    return seq is None or int(seq) > 0  # a missing registry is for verify to report


def seal_anchor(database: Database, key: ChainKey) -> Anchor | None:
    """Seal the anchor and start the registry if nobody has yet: at the first start after the
    upgrades that introduced them, or on a new database. Returns the anchor sealed here, None
    when it was sealed already (or is missing: for verify to report, not to remake).

    Starting the registry writes its first entry, ``legacy``: where the single chain of
    older versions (writer 1, appended to by nobody since revision 0004) ends.

    Every process that appends runs it first (a write only the first time). Safe to run from
    several processes at once: the rows are locked and read again before anything is written.
    """
    with database.read() as connection:
        anchor = read_anchor(connection)
        started = _registry_started(connection)
    if started and (anchor is None or anchor.seal is not None):
        return None
    sealed: Anchor | None = None
    with database.write() as connection:
        row = connection.execute(
            select(audit_anchor.c.seq, audit_anchor.c.hash, audit_anchor.c.seal)
            .where(audit_anchor.c.id == 1)
            .with_for_update()
        ).first()
        if row is not None and row.seal is None:
            anchored_at = isoformat_micro(utc_now())
            connection.execute(
                update(audit_anchor)
                .where(audit_anchor.c.id == 1)
                .values(
                    anchored_at=anchored_at,
                    seal=key.seal(int(row.seq), row.hash, anchored_at),
                )
            )
            sealed = Anchor(int(row.seq), row.hash, anchored_at, None)
        registry = connection.execute(
            select(audit_heads.c.seq).where(audit_heads.c.id == REGISTRY).with_for_update()
        ).scalar()
        if registry is not None and int(registry) == 0:
            legacy = connection.execute(
                select(audit_heads.c.seq, audit_heads.c.hash)
                .where(audit_heads.c.id == LEGACY_WRITER)
                .with_for_update()
            ).first()
            end = (int(legacy.seq), str(legacy.hash)) if legacy is not None else (0, GENESIS_HASH)
            append_entry(connection, key, "legacy", LEGACY_WRITER, end=end)
            if legacy is not None:
                connection.execute(
                    update(audit_heads).where(audit_heads.c.id == LEGACY_WRITER).values(closed=True)
                )
    if sealed is not None and sealed.seq:
        log.warning(
            "audit chain anchored: the unkeyed events before it stay verifiable",
            unkeyed_events=sealed.seq,
        )
    return sealed


def record_of(row: Any) -> dict[str, Any]:
    """The record (what the link covers) of a stored event row."""
    record = {name: getattr(row, name) for name in RECORD_COLUMNS}
    record["time"] = isoformat_micro(row.time)
    return record


def query_events(
    connection: Connection,
    *,
    since: datetime | None,
    access_id: str | None,
    path: str | None,
    outcome: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The newest events first, filtered: by time (indexed), then by global id.

    Not by global id alone: ids are drawn ahead by each process's appender
    (``audit/pg_append.IdReserve``, up to a second ahead), and processes append side by side,
    so an id tells which event is newer only roughly; the time is the request's own."""
    query = (
        select(audit_events)
        .order_by(audit_events.c.time.desc(), audit_events.c.seq.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(audit_events.c.time >= since)
    if access_id:
        query = query.where(audit_events.c.access_id == access_id)
    if path:
        query = query.where(audit_events.c.path == path)
    if outcome:
        query = query.where(audit_events.c.outcome == outcome)
    return [{"seq": row.seq, **record_of(row)} for row in connection.execute(query)]
