"""The auth methods domain's SQL.

Every function that takes a ``Connection`` runs in the caller's transaction, through
SQLAlchemy Core. :func:`login_method` is the login path's read: one statement at driver level
(``db/held.DriverRows``, which ``auth/login_reads.py`` holds), returning
what a login needs and nothing more. Rows come back as the frozen records below.

``config`` is the method's settings as stored (JSON; times as ``…Z`` text); the access key is
stored only as its keyed digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from strongroom.db import driver
from strongroom.db.held import DriverRows
from strongroom.db.records import record_from_row
from strongroom.db.tables import auth_methods


@dataclass(frozen=True, slots=True)
class AuthMethodRecord:
    """An auth method as the login service needs it."""

    id: int
    access_id: str
    name: str
    type: str
    config: dict[str, Any]
    access_key_digest: str | None


@dataclass(frozen=True, slots=True)
class StoredAuthMethod:
    """An auth method's row (its access key digest included: never show it)."""

    id: int
    access_id: str
    name: str
    type: str
    description: str
    config: dict[str, Any]
    access_key_digest: str | None
    created_at: datetime
    updated_at: datetime


def _stored(row: Any) -> StoredAuthMethod:
    return record_from_row(StoredAuthMethod, row, id=int(row.id), config=dict(row.config))


def method_by_name(
    connection: Connection, name: str, *, lock: bool = False
) -> StoredAuthMethod | None:
    """The method named ``name``, or None (``lock``: locked until the transaction ends, on
    PostgreSQL)."""
    query = select(auth_methods).where(auth_methods.c.name == name)
    row = connection.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _stored(row)


def all_methods(connection: Connection) -> list[StoredAuthMethod]:
    """Every auth method, by name."""
    rows = connection.execute(select(auth_methods).order_by(auth_methods.c.name))
    return [_stored(row) for row in rows]


def any_method(connection: Connection) -> bool:
    """Whether any auth method exists."""
    return connection.execute(select(auth_methods.c.id).limit(1)).first() is not None


def access_id_by_name(connection: Connection, name: str) -> str | None:
    access_id = connection.execute(
        select(auth_methods.c.access_id).where(auth_methods.c.name == name)
    ).scalar_one_or_none()
    return None if access_id is None else str(access_id)


def insert_method(
    connection: Connection,
    *,
    access_id: str,
    name: str,
    method_type: str,
    description: str,
    config: dict[str, Any],
    access_key_digest: str | None,
    now: datetime,
) -> int:
    """Add an auth method; its id. IntegrityError when the name (or access ID) is taken."""
    method_id: int = connection.execute(
        auth_methods.insert()
        .values(
            access_id=access_id,
            name=name,
            type=method_type,
            description=description,
            config=config,
            access_key_digest=access_key_digest,
            created_at=now,
            updated_at=now,
        )
        .returning(auth_methods.c.id)
    ).scalar_one()
    return method_id


def update_method(
    connection: Connection,
    method_id: int,
    *,
    config: dict[str, Any],
    description: str | None,
    now: datetime,
) -> None:
    """Replace the method's settings (and its description, unless None)."""
    values: dict[str, Any] = {"config": config, "updated_at": now}
    if description is not None:
        values["description"] = description
    connection.execute(update(auth_methods).where(auth_methods.c.id == method_id).values(values))


def delete_method(connection: Connection, method_id: int) -> None:
    """Remove the method; its associations and tokens go with it (foreign keys cascade)."""
    connection.execute(delete(auth_methods).where(auth_methods.c.id == method_id))


# Driver level, on autocommit driver connections (db/held.py): before every login's STS call.
# Written once per placeholder style (HeldConnection.placeholder).
_LOGIN_METHOD_TEMPLATE = (
    "SELECT id, access_id, name, type, config, access_key_digest FROM auth_methods "
    "WHERE access_id = {p}"
)
_LOGIN_METHOD = {p: _LOGIN_METHOD_TEMPLATE.format(p=p) for p in ("?", "%s")}


def login_method(held: DriverRows, access_id: str) -> AuthMethodRecord | None:
    """The auth method with ``access_id``, or None."""
    rows = held.rows(_LOGIN_METHOD[held.placeholder], (access_id,))
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
