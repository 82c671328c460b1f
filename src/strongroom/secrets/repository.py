"""The secrets domain's SQL: items and their versions (ciphertexts).

Every function runs in the caller's transaction, through SQLAlchemy Core, and returns the
frozen records below. A value is stored only as its ciphertext, sealed to (item id, version)
under the data key ``key_id`` (``crypto/envelope.py``); sealing and opening are the service's.

A secret read's row is not read here: it is one of the two hot reads every worker runs on its
held connection or, on PostgreSQL, its asynchronous pool (``db/hot.HotReads.version_row``).
Every function here that changes an item or a version bumps the ``secrets`` counter in the
same transaction (once per transaction, ``db/counters.py``): the rows workers keep of
``version_row`` are valid for one value of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from strongroom.db import counters
from strongroom.db.records import record_from_row
from strongroom.db.tables import item_versions, items


@dataclass(frozen=True, slots=True)
class StoredItem:
    id: int
    name: str
    description: str
    tags: list[str]
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A version's metadata (not its ciphertext)."""

    version: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class SealedVersion:
    """A version's ciphertext and what it is sealed to (``item_context(item_id, version)``)."""

    id: int
    item_id: int
    version: int
    ciphertext: bytes


def _item(row: Any) -> StoredItem:
    return record_from_row(StoredItem, row, id=int(row.id), latest_version=int(row.latest_version))


# -- items ---------------------------------------------------------------------------------


def item_by_name(connection: Connection, name: str, *, lock: bool = False) -> StoredItem | None:
    """The item named ``name``. ``lock``: its row stays locked until the transaction ends
    (PostgreSQL's FOR UPDATE), so that writers of one item take turns; SQLite's write
    transactions exclude each other already."""
    query = select(items).where(items.c.name == name)
    row = connection.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _item(row)


def items_in_range(connection: Connection, low: str, high: str) -> list[StoredItem]:
    """Items named from ``low`` (included) to ``high`` (excluded), by name: an index range."""
    rows = connection.execute(
        select(items).where(items.c.name >= low, items.c.name < high).order_by(items.c.name)
    )
    return [_item(row) for row in rows]


def count_items(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(items)).scalar_one())


def insert_item(
    connection: Connection,
    *,
    name: str,
    description: str,
    tags: list[str],
    now: datetime,
) -> int:
    """Add an item whose newest version is 1 (insert it next); its id. IntegrityError when
    the name is taken."""
    item_id: int = connection.execute(
        items.insert()
        .values(
            name=name,
            description=description,
            tags=tags,
            latest_version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(items.c.id)
    ).scalar_one()
    _changed(connection)
    return item_id


def set_latest_version(connection: Connection, item_id: int, version: int, now: datetime) -> None:
    connection.execute(
        update(items).where(items.c.id == item_id).values(latest_version=version, updated_at=now)
    )
    _changed(connection)


def delete_item(connection: Connection, item_id: int) -> None:
    """Remove the item; its versions go with it (foreign keys cascade)."""
    connection.execute(delete(items).where(items.c.id == item_id))
    _changed(connection)


# -- versions ------------------------------------------------------------------------------


def insert_version(
    connection: Connection,
    *,
    item_id: int,
    version: int,
    ciphertext: bytes,
    key_id: int,
    created_by: str,
    now: datetime,
) -> None:
    """Add a version. IntegrityError when (item, version) exists already."""
    connection.execute(
        item_versions.insert().values(
            item_id=item_id,
            version=version,
            ciphertext=ciphertext,
            key_id=key_id,
            created_at=now,
            created_by=created_by,
        )
    )
    _changed(connection)


def newest_existing_version(connection: Connection, item_id: int) -> int | None:
    """The highest version number still stored for the item (None: none is)."""
    newest = connection.execute(
        select(func.max(item_versions.c.version)).where(item_versions.c.item_id == item_id)
    ).scalar_one_or_none()
    return None if newest is None else int(newest)


def versions_of(connection: Connection, item_id: int) -> list[StoredVersion]:
    """The item's stored versions, oldest first."""
    rows = connection.execute(
        select(item_versions.c.version, item_versions.c.created_at, item_versions.c.created_by)
        .where(item_versions.c.item_id == item_id)
        .order_by(item_versions.c.version)
    )
    return [
        StoredVersion(
            version=int(row.version), created_at=row.created_at, created_by=row.created_by
        )
        for row in rows
    ]


def delete_version(connection: Connection, item_id: int, version: int) -> bool:
    """Remove one version; whether it existed."""
    removed = connection.execute(
        delete(item_versions).where(
            item_versions.c.item_id == item_id, item_versions.c.version == version
        )
    ).rowcount
    _changed(connection)
    return removed != 0


# -- values under an older data key (keys rotate, ``strongroom keys rewrap``) --------------


def count_sealed_under_older_keys(connection: Connection, key_id: int) -> int:
    """How many versions are sealed under a data key older than ``key_id`` (one newer than
    it, added by a rotation meanwhile, is not stale)."""
    return int(
        connection.execute(
            select(func.count()).select_from(item_versions).where(item_versions.c.key_id < key_id)
        ).scalar_one()
    )


def sealed_under_older_keys(connection: Connection, key_id: int, limit: int) -> list[SealedVersion]:
    """Up to ``limit`` versions sealed under a data key older than ``key_id``."""
    rows = connection.execute(
        select(
            item_versions.c.id,
            item_versions.c.item_id,
            item_versions.c.version,
            item_versions.c.ciphertext,
        )
        .where(item_versions.c.key_id < key_id)
        .limit(limit)
    )
    return [
        SealedVersion(
            id=int(row.id),
            item_id=int(row.item_id),
            version=int(row.version),
            ciphertext=bytes(row.ciphertext),
        )
        for row in rows
    ]


def reseal_version(connection: Connection, version_id: int, ciphertext: bytes, key_id: int) -> None:
    """Replace a version's ciphertext by the same value sealed under ``key_id``."""
    connection.execute(
        update(item_versions)
        .where(item_versions.c.id == version_id)
        .values(ciphertext=ciphertext, key_id=key_id)
    )
    _changed(connection)


def _changed(connection: Connection) -> None:
    counters.bump(connection, counters.SECRETS)
