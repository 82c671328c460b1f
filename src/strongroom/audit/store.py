"""Storage of audit events: append under the chain-head lock, anchor, verify, query.

:func:`append_events` is the one place that writes links (their format: ``audit/chain.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select, update

from strongroom.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainKey,
    same_link,
    unkeyed_link,
    verify_links,
)
from strongroom.audit.event import AuditEvent, isoformat_micro
from strongroom.db import driver
from strongroom.db.engine import Database
from strongroom.db.tables import audit_anchor, audit_chain_head, audit_events
from strongroom.errors import ServiceUnavailableError
from strongroom.kit.clock import utc_now

log = structlog.get_logger("strongroom.audit")

_INSERT_COLUMNS = (
    "seq",
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


def _statements(p: str) -> tuple[str, str, str]:
    """The append statements for a driver placeholder ``p``; built only from constants."""
    columns = ", ".join(_INSERT_COLUMNS)
    values = ", ".join([p] * len(_INSERT_COLUMNS))
    return (
        f"UPDATE audit_chain_head SET seq = seq + {p} WHERE id = 1 RETURNING seq, hash",  # noqa: S608
        f"INSERT INTO audit_events ({columns}) VALUES ({values})",  # noqa: S608
        f"UPDATE audit_chain_head SET hash = {p} WHERE id = 1",  # noqa: S608
    )


_SQLITE_SQL = _statements("?")
_POSTGRES_SQL = _statements("%s")


def append_events(connection: Connection, key: ChainKey, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` to the chain, linked under ``key``, inside the caller's write
    transaction. The events count as stored only once that transaction commits.

    The first statement bumps the head row and returns it: it takes the write lock (SQLite)
    or the row lock (PostgreSQL) before anything is read, so concurrent appenders from other
    workers or replicas queue up instead of forking the chain.

    Three driver-level statements per batch rather than SQLAlchemy's statement machinery,
    which cost ten times as much here; a batch of 16 costs about 20 µs an event, write
    transaction included (``bench/read_path_steps.py``). Any failure raises
    ServiceUnavailableError and, by leaving the transaction, rolls back what it guarded.
    """
    if not events:
        return
    sqlite = connection.dialect.name == "sqlite"
    bump, insert, seal = _SQLITE_SQL if sqlite else _POSTGRES_SQL
    try:
        cursor = driver.cursor(connection)
        cursor.execute(bump, (len(events),))
        head_seq, prev_hash = cursor.fetchone()
        seq = int(head_seq) - len(events)
        rows: list[tuple[Any, ...]] = []
        for event in events:
            seq += 1
            record = event.record()
            current = key.link(prev_hash, seq, record)
            rows.append(
                (
                    seq,
                    driver.stored_time(connection, event.time),
                    *(record[name] for name in _INSERT_COLUMNS[2:-2]),
                    prev_hash,
                    current,
                )
            )
            prev_hash = current
        cursor.executemany(insert, rows)
        cursor.execute(seal, (prev_hash,))
        cursor.close()
    except Exception as exc:  # whatever the driver raised, the trail was not written
        raise ServiceUnavailableError(
            "the audit trail cannot be written", reason=f"audit append failed: {exc!r}"
        ) from exc


# The event's fields as stored (besides time and the chain's): what the chain hashes.
RECORD_COLUMNS = (
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
)


def _record_of(row: Any) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in RECORD_COLUMNS}
    record["time"] = isoformat_micro(row.time)
    return record


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


def seal_anchor(database: Database, key: ChainKey) -> Anchor | None:
    """Seal the anchor if nobody has yet: at the first start after the upgrade that introduced
    it, or on a new database. Returns the anchor sealed here, None when there was nothing to do.

    Every process that appends seals first (a write only the first time). Safe to run from
    several processes at once: the row is locked and read again before it is sealed.
    """
    with database.read() as connection:
        anchor = read_anchor(connection)
    if anchor is None or anchor.seal is not None:
        return None  # sealed already; a missing anchor is for verify to report, not to remake
    with database.write() as connection:
        row = connection.execute(
            select(audit_anchor.c.seal).where(audit_anchor.c.id == 1).with_for_update()
        ).first()
        if row is None or row.seal is not None:
            return None
        anchored_at = isoformat_micro(utc_now())
        connection.execute(
            update(audit_anchor)
            .where(audit_anchor.c.id == 1)
            .values(anchored_at=anchored_at, seal=key.seal(anchor.seq, anchor.hash, anchored_at))
        )
    if anchor.seq:
        log.warning(
            "audit chain anchored: the unkeyed events before it stay verifiable",
            unkeyed_events=anchor.seq,
        )
    return Anchor(anchor.seq, anchor.hash, anchored_at, None)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int  # events whose links were checked
    head_seq: int
    broken: ChainBreak | None
    unkeyed: int = 0  # events before the anchor, linked unkeyed by an older version
    anchored_at: str | None = None  # when the keyed chain was anchored


def _rows(
    connection: Connection, after: int, until: int | None, batch: int
) -> Iterator[Sequence[Any]]:
    """Events with ``after < seq (<= until)`` in order, ``batch`` at a time."""
    while True:
        query = select(audit_events).where(audit_events.c.seq > after)
        if until is not None:
            query = query.where(audit_events.c.seq <= until)
        rows = connection.execute(query.order_by(audit_events.c.seq).limit(batch)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def verify_chain(connection: Connection, key: ChainKey | None, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain as ``connection`` sees it; report the first break.

    ``key`` is None for a database without data keys yet (nothing can have been written).
    Run it in one consistent snapshot (``Database.snapshot``): events are appended while it
    reads, and a head read in one snapshot with events read in another disagree. Writes nothing.
    """
    head = connection.execute(select(audit_chain_head.c.seq, audit_chain_head.c.hash)).one()
    if key is None:
        any_event = connection.execute(select(audit_events.c.seq).limit(1)).first()
        if head.seq == 0 and any_event is None:
            return VerifyResult(0, 0, None)
        return VerifyResult(0, head.seq, ChainBreak(1, "events are stored but no data keys"))
    anchor = read_anchor(connection)

    def result(checked: int, broken: ChainBreak | None) -> VerifyResult:
        return VerifyResult(
            checked,
            head.seq,
            broken,
            unkeyed=anchor.seq if anchor is not None else 0,
            anchored_at=anchor.anchored_at if anchor is not None else None,
        )

    # Removing or moving the anchor would let forged unkeyed links pass as the old chain.
    if anchor is None:
        return result(0, ChainBreak(0, "the anchor of the keyed chain is missing"))
    if anchor.seal is None or anchor.anchored_at is None:
        if head.seq == 0:
            return result(0, None)  # nothing written yet: nothing to protect
        return result(
            0,
            ChainBreak(
                anchor.seq,
                "the chain is not anchored yet: start the server once (with the master key) "
                "after the upgrade",
            ),
        )
    if not same_link(key.seal(anchor.seq, anchor.hash, anchor.anchored_at), anchor.seal):
        return result(0, ChainBreak(anchor.seq, "the anchor does not match its seal"))

    checked = 0
    last_seq, last_hash = 0, GENESIS_HASH
    for phase_until, link in ((anchor.seq, unkeyed_link), (None, key.link)):
        for rows in _rows(connection, last_seq, phase_until, batch):
            count, broken = verify_links(
                ((r.seq, r.prev_hash, r.hash, _record_of(r)) for r in rows),
                link,
                start_hash=last_hash,
                start_seq=last_seq,
            )
            checked += count
            if broken is not None:
                return result(checked, broken)
            last_seq, last_hash = rows[-1].seq, rows[-1].hash
        if phase_until is not None and (
            last_seq != anchor.seq or not same_link(last_hash, anchor.hash)
        ):
            return result(
                checked, ChainBreak(anchor.seq, "the unkeyed chain does not end on its anchor")
            )
    if last_seq > head.seq:
        return result(checked, ChainBreak(head.seq + 1, "events follow the head of the chain"))
    if last_seq != head.seq or not same_link(last_hash, head.hash):
        return result(checked, ChainBreak(last_seq, "events are missing at the end of the chain"))
    return result(checked, None)


def query_events(
    connection: Connection,
    *,
    since: datetime | None,
    access_id: str | None,
    path: str | None,
    outcome: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The newest events first, filtered."""
    query = select(audit_events).order_by(audit_events.c.seq.desc()).limit(limit)
    if since is not None:
        query = query.where(audit_events.c.time >= since)
    if access_id:
        query = query.where(audit_events.c.access_id == access_id)
    if path:
        query = query.where(audit_events.c.path == path)
    if outcome:
        query = query.where(audit_events.c.outcome == outcome)
    return [{"seq": row.seq, **_record_of(row)} for row in connection.execute(query)]
