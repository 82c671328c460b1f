"""The tokens domain's SQL: tokens, the associations they carry, and the cache generation.

Every function runs in the caller's transaction. A token is stored only as its keyed digest.
Minting runs inside every login's write transaction, so its two statements go through the
driver (``db/driver.py``); the rest are SQLAlchemy Core. The per-request generation read is
``db/hot.HotReads.generation`` (not a transaction), or none while PostgreSQL's change feed
vouches for the value (``db/change_feed.py``).

The ``generation`` counter is what every worker's token and rule caches are valid for: every
change to roles, rules, associations, auth methods or tokens calls :func:`bump_generation` in
its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from strongroom.db import counters, driver
from strongroom.db.tables import (
    auth_methods,
    role_associations,
    roles,
    token_associations,
    tokens,
)

_MINT_SQL = (
    "INSERT INTO tokens (digest, auth_method_id, claims, created_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id"
)
_MINT_LINKS_SQL = "INSERT INTO token_associations (token_id, association_id) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A stored token and the auth method that issued it."""

    id: int
    claims: dict[str, str]
    created_at: datetime
    expires_at: datetime
    auth_method_id: int
    auth_method_name: str
    access_id: str


@dataclass(frozen=True, slots=True)
class TokenRole:
    """A role a token carries (through one of its associations)."""

    id: int
    name: str


def bump_generation(connection: Connection) -> None:
    """Invalidate every worker's token and rule caches (call inside the changing transaction;
    ``db/counters.py`` says how every replica learns of it)."""
    counters.bump(connection, counters.GENERATION)


def insert_token(
    connection: Connection,
    *,
    digest: str,
    auth_method_id: int,
    claims: Mapping[str, str],
    association_ids: Sequence[int],
    created_at: datetime,
    expires_at: datetime,
) -> int:
    """Store a token (its digest) carrying ``association_ids``; its id. Driver level."""
    db = driver.cursor(connection)
    db.execute(
        driver.sql(connection, _MINT_SQL),
        (
            digest,
            auth_method_id,
            driver.stored_json(connection, claims),
            driver.stored_time(connection, created_at),
            driver.stored_time(connection, expires_at),
        ),
    )
    token_id = int(db.fetchone()[0])
    if association_ids:
        db.executemany(
            driver.sql(connection, _MINT_LINKS_SQL),
            [(token_id, association_id) for association_id in association_ids],
        )
    db.close()
    return token_id


def delete_expired(connection: Connection, now: datetime, *, limit: int = 100) -> None:
    """Delete up to ``limit`` tokens expired before ``now``."""
    stale = select(tokens.c.id).where(tokens.c.expires_at < now).limit(limit).scalar_subquery()
    connection.execute(delete(tokens).where(tokens.c.id.in_(stale)))


def token_by_digest(connection: Connection, digest: str) -> StoredToken | None:
    """The token stored as ``digest`` with its auth method, or None (unknown or revoked)."""
    row = connection.execute(
        select(
            tokens.c.id,
            tokens.c.claims,
            tokens.c.created_at,
            tokens.c.expires_at,
            auth_methods.c.id.label("method_id"),
            auth_methods.c.name.label("method_name"),
            auth_methods.c.access_id,
        )
        .join(auth_methods, auth_methods.c.id == tokens.c.auth_method_id)
        .where(tokens.c.digest == digest)
    ).first()
    if row is None:
        return None
    return StoredToken(
        id=int(row.id),
        claims=dict(row.claims),
        created_at=row.created_at,
        expires_at=row.expires_at,
        auth_method_id=int(row.method_id),
        auth_method_name=row.method_name,
        access_id=row.access_id,
    )


def roles_of_token(connection: Connection, token_id: int) -> list[TokenRole]:
    """The roles the token carries through its associations, by name (a role twice if two
    of its associations matched)."""
    rows = connection.execute(
        select(roles.c.id, roles.c.name)
        .join(role_associations, role_associations.c.role_id == roles.c.id)
        .join(
            token_associations,
            token_associations.c.association_id == role_associations.c.id,
        )
        .where(token_associations.c.token_id == token_id)
        .order_by(roles.c.name)
    ).all()
    return [TokenRole(id=int(row.id), name=row.name) for row in rows]


def delete_token(connection: Connection, digest: str) -> None:
    connection.execute(delete(tokens).where(tokens.c.digest == digest))


def delete_tokens_carrying(connection: Connection, association_id: int) -> None:
    """Delete every token that carries the association (SPEC: dissociation revokes)."""
    carriers = select(token_associations.c.token_id).where(
        token_associations.c.association_id == association_id
    )
    connection.execute(delete(tokens).where(tokens.c.id.in_(carriers)))
