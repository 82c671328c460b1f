"""Storage of audit events: append under the chain-head lock, verify, query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from strongroom.audit.chain import ChainBreak, link_hash, verify_links
from strongroom.audit.event import AuditEvent, isoformat_micro
from strongroom.db import driver
from strongroom.db.tables import audit_events, audit_head
from strongroom.errors import ServiceUnavailableError

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
        f"UPDATE audit_head SET seq = seq + {p} WHERE id = 1 RETURNING seq, hash",  # noqa: S608
        f"INSERT INTO audit_events ({columns}) VALUES ({values})",  # noqa: S608
        f"UPDATE audit_head SET hash = {p} WHERE id = 1",  # noqa: S608
    )


_SQLITE_SQL = _statements("?")
_POSTGRES_SQL = _statements("%s")


def append_events(connection: Connection, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` to the chain inside the caller's write transaction.

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
            current = link_hash(prev_hash, seq, record)
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
    for event in events:
        event.written = True


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
class VerifyResult:
    checked: int
    head_seq: int
    broken: ChainBreak | None


def verify_chain(connection: Connection, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain in batches; report the first break and the number checked."""
    head = connection.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
    checked = 0
    last_seq = 0
    last_hash = "0" * 64
    while True:
        rows = connection.execute(
            select(audit_events)
            .where(audit_events.c.seq > last_seq)
            .order_by(audit_events.c.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        count, broken = verify_links(
            ((r.seq, r.prev_hash, r.hash, _record_of(r)) for r in rows),
            start_hash=last_hash,
            start_seq=last_seq,
        )
        checked += count
        if broken is not None:
            return VerifyResult(checked, head.seq, broken)
        last_seq, last_hash = rows[-1].seq, rows[-1].hash
    if last_seq != head.seq or last_hash != head.hash:
        return VerifyResult(
            checked, head.seq, ChainBreak(last_seq, "events are missing at the end of the chain")
        )
    return VerifyResult(checked, head.seq, None)


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
