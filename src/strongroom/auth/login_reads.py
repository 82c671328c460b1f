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

from sqlalchemy import Engine

from strongroom.auth import login_repository
from strongroom.auth.login_repository import FailureCount
from strongroom.auth_methods import repository as auth_method_repository
from strongroom.auth_methods.repository import AuthMethodRecord
from strongroom.db.held import DriverRows, HeldConnection, PooledRows

__all__ = ["FailureCount", "LoginReads"]


class LoginReads:
    """Driver-level reads for the login path (see the module's contract); the statements
    are their domains' (``auth/login_repository.py``, ``auth_methods/repository.py``)."""

    def __init__(self, engine: Engine) -> None:
        self._held: DriverRows = (
            HeldConnection(engine, purpose="login read")
            if engine.dialect.name == "sqlite"
            else PooledRows(engine, purpose="login read")
        )

    def failure_counts(self, keys: Sequence[str]) -> list[FailureCount]:
        """The counters of ``keys`` that exist (a key never failed has none)."""
        return login_repository.failure_counts(self._held, keys)

    def auth_method(self, access_id: str) -> AuthMethodRecord | None:
        """The auth method with ``access_id``, or None."""
        return auth_method_repository.login_method(self._held, access_id)

    def signature_spent(self, digest: str) -> bool:
        """Whether a login already used the signed request with this signature digest."""
        return login_repository.signature_spent(self._held, digest)

    def close(self) -> None:
        self._held.close()
