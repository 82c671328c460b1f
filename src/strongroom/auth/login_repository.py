"""The login's own SQL: the replay cache (``login_replay``) and the failed-login counters
(``login_failures``, see ``login_failures.py`` for what the keys are).

Two kinds of statement, by where they run:

- reads before a login's STS call (:func:`failure_counts`, :func:`signature_spent`): driver
  level on a :class:`~strongroom.db.held.HeldConnection` on SQLite, on pooled connections
  (``PooledRows``) on PostgreSQL (``login_reads.py`` holds one per loop that runs logins);
- writes in the caller's transaction: :func:`spend_signature` at driver level (it is inside
  every AWS IAM login's write transaction, ``db/driver.py``), the rest through SQLAlchemy Core.

Values come back as the SQLAlchemy column types of ``db/tables.py`` would give them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from strongroom.db import driver
from strongroom.db.held import DriverRows
from strongroom.db.tables import login_failures, login_replay

# Held-connection statements, written once per placeholder style (HeldConnection.placeholder).
_SPENT_TEMPLATE = "SELECT 1 FROM login_replay WHERE signature_digest = {p}"
_SPENT = {p: _SPENT_TEMPLATE.format(p=p) for p in ("?", "%s")}
_FAILURES = "SELECT key, window_start, count FROM login_failures WHERE key IN ({keys})"
_SPEND_SQL = "INSERT INTO login_replay (signature_digest, expires_at) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed logins counted for one key (``ip:…`` or ``pair:…``, see login_failures.py)
    since ``window_start``."""

    key: str
    window_start: datetime
    failures: int


# -- the replay cache ----------------------------------------------------------------------


def signature_spent(held: DriverRows, digest: str) -> bool:
    """Whether a login already used the signed request with this signature digest."""
    return bool(held.rows(_SPENT[held.placeholder], (digest,)))


def spend_signature(connection: Connection, digest: str, expires_at: datetime) -> None:
    """Mark the signature used until ``expires_at``, in the login's transaction (driver
    level). The driver's IntegrityError when it was used already (``driver.INTEGRITY_ERRORS``)."""
    db = driver.cursor(connection)
    db.execute(
        driver.sql(connection, _SPEND_SQL),
        (digest, driver.stored_time(connection, expires_at)),
    )
    db.close()


def delete_expired_spends(connection: Connection, now: datetime) -> None:
    connection.execute(delete(login_replay).where(login_replay.c.expires_at < now))


# -- failed-login counters -----------------------------------------------------------------


def failure_counts(held: DriverRows, keys: Sequence[str]) -> list[FailureCount]:
    """The counters of ``keys`` that exist (a key never failed has none)."""
    if not keys:
        return []
    # Only placeholders are formatted in: the keys themselves are bound parameters.
    sql = _FAILURES.format(keys=", ".join([held.placeholder] * len(keys)))
    return [
        FailureCount(key=str(key), window_start=driver.loaded_time(start), failures=int(n))
        for key, start, n in held.rows(sql, tuple(keys))
    ]


def failure_window_start(connection: Connection, key: str) -> datetime | None:
    """When the counting window of ``key`` began, or None if ``key`` has no counter."""
    row = connection.execute(
        select(login_failures.c.window_start).where(login_failures.c.key == key)
    ).first()
    if row is None:
        return None
    window_start: datetime = row.window_start
    return window_start


def start_failure_window(connection: Connection, key: str, now: datetime, *, new: bool) -> None:
    """Count one failure for ``key`` in a window starting ``now`` (``new``: the key has no
    counter yet; IntegrityError if another transaction made one meanwhile)."""
    if new:
        connection.execute(login_failures.insert().values(key=key, window_start=now, count=1))
    else:
        connection.execute(
            login_failures.update()
            .where(login_failures.c.key == key)
            .values(window_start=now, count=1)
        )


def add_failure(connection: Connection, key: str) -> None:
    """Count one more failure for ``key`` in its current window."""
    connection.execute(
        login_failures.update()
        .where(login_failures.c.key == key)
        .values(count=login_failures.c.count + 1)
    )


def delete_ended_windows(connection: Connection, started_before: datetime) -> None:
    """Delete the counters whose window started at or before ``started_before``."""
    connection.execute(
        delete(login_failures).where(login_failures.c.window_start <= started_before)
    )
