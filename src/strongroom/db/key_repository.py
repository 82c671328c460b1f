"""The data keys' SQL (``data_keys``: row 0 the digest key, rows 1..n the encryption keys,
each wrapped by the master key; ``db/keys.py`` says what they are for).

Every function runs in the caller's transaction, through SQLAlchemy Core.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select, text, update

from strongroom.db.tables import data_keys


@dataclass(frozen=True, slots=True)
class WrappedKey:
    id: int
    wrapped: bytes


def wrapped_keys(connection: Connection) -> list[WrappedKey]:
    """Every data key, as the master key wrapped it."""
    rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped))
    return [WrappedKey(id=int(row.id), wrapped=bytes(row.wrapped)) for row in rows]


def wrapped_keys_above(connection: Connection, key_id: int) -> list[WrappedKey]:
    """The data keys numbered above ``key_id``, in order (one range on the primary key)."""
    rows = connection.execute(
        select(data_keys.c.id, data_keys.c.wrapped)
        .where(data_keys.c.id > key_id)
        .order_by(data_keys.c.id)
    )
    return [WrappedKey(id=int(row.id), wrapped=bytes(row.wrapped)) for row in rows]


def any_key(connection: Connection) -> bool:
    """Whether any data key is stored."""
    return connection.execute(select(data_keys.c.id).limit(1)).first() is not None


def newest_key_id(connection: Connection) -> int | None:
    """The highest key number stored, or None."""
    newest = connection.execute(select(func.max(data_keys.c.id))).scalar_one()
    return None if newest is None else int(newest)


def insert_key(
    connection: Connection, key_id: int, purpose: str, wrapped: bytes, now: datetime
) -> None:
    connection.execute(
        data_keys.insert().values(id=key_id, purpose=purpose, wrapped=wrapped, created_at=now)
    )


def set_wrapped(connection: Connection, key_id: int, wrapped: bytes) -> None:
    """Replace the key's wrapping (the same key under another master key)."""
    connection.execute(update(data_keys).where(data_keys.c.id == key_id).values(wrapped=wrapped))


def lock_against_new_keys(connection: Connection) -> None:
    """Until the transaction ends, no data key can be added (PostgreSQL; a SQLite write
    transaction holds the whole database already)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE"))
