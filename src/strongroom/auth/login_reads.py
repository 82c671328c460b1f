"""The reads every login makes before it writes, at driver level on a held connection.

A login reads its failure counters (429 before any work), its auth method, and, for AWS IAM,
whether its signed request was already used. Through SQLAlchemy those three cost about 0.75 ms
a login on the machines ``bench/login.py`` runs on; on a :class:`~strongroom.db.held.HeldConnection`
they cost a few tens of microseconds. Each is a single-statement read that needs no snapshot
shared with the others: the decisions they feed are made certain at write time (the replay
mark's primary key), or are best effort by design (failure counting).

Contract: one :class:`LoginReads` per loop that runs logins. On SQLite it is used only from that
loop's thread (a held connection); on PostgreSQL from the threads of ``db/work.py`` (a pooled
connection per statement). Values come back as the SQLAlchemy column types of ``db/tables.py``
would give them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from strongroom.auth_methods.service import AuthMethodRecord
from strongroom.db import driver
from strongroom.db.held import HeldConnection, PooledRows

_METHOD = (
    "SELECT id, access_id, name, type, config, access_key_digest FROM auth_methods "
    "WHERE access_id = {p}"
)
_SPENT = "SELECT 1 FROM login_replay WHERE signature_digest = {p}"
_FAILURES = "SELECT key, window_start, count FROM login_failures WHERE key IN ({keys})"


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed logins counted for one key (``ip:…`` or ``pair:…``, see login_failures.py)
    since ``window_start``."""

    key: str
    window_start: datetime
    failures: int


class LoginReads:
    """Driver-level reads for the login path (see the module's contract)."""

    def __init__(self, engine: Engine) -> None:
        self._held: HeldConnection | PooledRows = (
            HeldConnection(engine, purpose="login read")
            if engine.dialect.name == "sqlite"
            else PooledRows(engine, purpose="login read")
        )
        placeholder = self._held.placeholder
        self._placeholder = placeholder
        self._method = _METHOD.format(p=placeholder)
        self._spent = _SPENT.format(p=placeholder)

    def failure_counts(self, keys: Sequence[str]) -> list[FailureCount]:
        """The counters of ``keys`` that exist (a key never failed has none)."""
        if not keys:
            return []
        # Only placeholders are formatted in: the keys themselves are bound parameters.
        sql = _FAILURES.format(keys=", ".join([self._placeholder] * len(keys)))
        return [
            FailureCount(key=str(key), window_start=driver.loaded_time(start), failures=int(n))
            for key, start, n in self._held.rows(sql, tuple(keys))
        ]

    def auth_method(self, access_id: str) -> AuthMethodRecord | None:
        """The auth method with ``access_id``, or None."""
        rows = self._held.rows(self._method, (access_id,))
        if not rows:
            return None
        method_id, stored_access_id, name, method_type, config, access_key_digest = rows[0]
        return AuthMethodRecord(
            id=int(method_id),
            access_id=str(stored_access_id),
            name=str(name),
            type=str(method_type),
            config=dict(driver.loaded_json(config) or {}),
            access_key_digest=access_key_digest,
        )

    def signature_spent(self, digest: str) -> bool:
        """Whether a login already used the signed request with this signature digest."""
        return bool(self._held.rows(self._spent, (digest,)))

    def close(self) -> None:
        self._held.close()
