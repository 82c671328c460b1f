"""Data keys in the database, wrapped by the master key (SPEC section 6).

Row 0 holds the digest key (keys the HMAC of tokens and access keys); rows 1..n hold the
numbered encryption keys, the newest of which encrypts new values.

The audit chain key (``strongroom.audit.chain``) is derived from the digest key with HKDF,
purpose ``AUDIT_CHAIN_KEY_PURPOSE``, rather than stored in a row of its own: it is then
unusable without the master key like every data key, survives a new master key
(``rewrap_master``) with the digest key, and has no "create it when missing" path that someone
with write access to the database could trigger by deleting a row (the digest key cannot be
replaced without invalidating every token and access key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from strongroom.audit.chain import ChainKey
from strongroom.crypto import (
    DecryptionError,
    Keyring,
    MasterKeyProvider,
    TokenDigester,
    derive_key,
    new_data_key,
)
from strongroom.db.engine import Database
from strongroom.db.tables import data_keys, item_versions
from strongroom.errors import ConfigurationError
from strongroom.kit.clock import utc_now

DIGEST_KEY_ID = 0
AUDIT_CHAIN_KEY_PURPOSE = b"strongroom:audit-chain-key:v1"


@dataclass(frozen=True)
class Keys:
    keyring: Keyring
    digester: TokenDigester
    audit: ChainKey


def load_or_create_keys(
    database: Database, master: MasterKeyProvider, *, create: bool = True
) -> Keys:
    """Unwrap every data key; create the first ones on a new database.

    ``create=False``: only read them (a server's workers: the supervisor created them at
    start, and a worker that starts while the database cannot be written must still start).
    """
    if not create:
        with database.read() as connection:
            rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all()
        if not rows:
            raise ConfigurationError("the database has no data keys: start the server first")
    else:
        with database.write() as connection:
            rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all()
            if not rows:
                _insert_key(connection, master, DIGEST_KEY_ID, "digest")
                _insert_key(connection, master, 1, "encryption")
                rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all()
    return _unwrap(rows, master)


def load_keys(connection: Connection, master: MasterKeyProvider) -> Keys | None:
    """Unwrap the data keys as ``connection`` sees them, writing nothing; None if there are
    none yet. Raises ConfigurationError like :func:`load_or_create_keys`."""
    rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all()
    return _unwrap(rows, master) if rows else None


def _unwrap(rows: Sequence[Any], master: MasterKeyProvider) -> Keys:
    try:
        unwrapped = {row.id: master.unwrap(row.wrapped, row.id) for row in rows}
    except DecryptionError as exc:
        raise ConfigurationError(
            "the master key does not unwrap this database's data keys "
            f"({exc.reason}); configure the master key this database was created with"
        ) from None
    digest_key = unwrapped.pop(DIGEST_KEY_ID)
    return Keys(
        keyring=Keyring(unwrapped),
        digester=TokenDigester(digest_key),
        audit=ChainKey(derive_key(digest_key, AUDIT_CHAIN_KEY_PURPOSE)),
    )


def unwrap_newer_keys(
    connection: Connection, master: MasterKeyProvider, newest_id: int
) -> dict[int, bytes]:
    """The encryption keys numbered above ``newest_id``, unwrapped: those that ``keys rotate``
    added since a keyring was loaded. Usually none, found with one look-up on the primary key.
    Raises DecryptionError (naming no key) when ``master`` cannot unwrap one of them."""
    rows = connection.execute(
        select(data_keys.c.id, data_keys.c.wrapped)
        .where(data_keys.c.id > newest_id)
        .order_by(data_keys.c.id)
    ).all()
    return {row.id: master.unwrap(row.wrapped, row.id) for row in rows}


def has_data_keys(database: Database) -> bool:
    """Whether a master key has already wrapped data keys here (the database is in use)."""
    with database.read() as connection:
        return connection.execute(select(data_keys.c.id).limit(1)).first() is not None


def _insert_key(
    connection: Connection, master: MasterKeyProvider, key_id: int, purpose: str
) -> None:
    connection.execute(
        data_keys.insert().values(
            id=key_id,
            purpose=purpose,
            wrapped=master.wrap(new_data_key(), key_id),
            created_at=utc_now(),
        )
    )


def rotate(database: Database, master: MasterKeyProvider) -> int:
    """Add a new newest encryption key; return its number. Nothing is re-encrypted."""
    with database.write() as connection:
        if connection.dialect.name == "postgresql":
            # Two rotations at once would both pick the same number (SQLite's writers queue).
            connection.execute(text("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE"))
        newest = connection.execute(select(func.max(data_keys.c.id))).scalar_one()
        key_id = int(newest or 0) + 1
        _insert_key(connection, master, key_id, "encryption")
    return key_id


def rewrap_master(database: Database, old: MasterKeyProvider, new: MasterKeyProvider) -> int:
    """Re-wrap every data key under a new master key; values are untouched."""
    with database.write() as connection:
        return rewrap_master_keys(connection, old, new)


def rewrap_master_keys(
    connection: Connection, old: MasterKeyProvider, new: MasterKeyProvider
) -> int:
    """:func:`rewrap_master` inside the caller's write transaction; the number of keys.

    Each key is unwrapped again with ``new`` before the transaction may commit: a provider
    that wraps but cannot unwrap (a KMS key without Decrypt rights) must not leave every
    value unreadable. Raises ConfigurationError (a key ``old`` does not open, or one ``new``
    does not give back) and leaves the transaction to roll back.
    """
    if connection.dialect.name == "postgresql":
        # No data key may be added meanwhile (keys rotate): it would stay under the old key.
        connection.execute(text("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE"))
    rows = connection.execute(select(data_keys.c.id, data_keys.c.wrapped)).all()
    for row in rows:
        try:
            data_key = old.unwrap(row.wrapped, row.id)
        except DecryptionError as exc:
            raise ConfigurationError(
                "the current master key does not unwrap this database's data keys "
                f"({exc.reason}): configure the one it was created with"
            ) from None
        rewrapped = new.wrap(data_key, row.id)
        try:
            opened = new.unwrap(rewrapped, row.id)
        except DecryptionError as exc:
            raise ConfigurationError(
                f"the new master key cannot unwrap what it wrapped ({exc.reason})"
            ) from None
        if opened != data_key:
            raise ConfigurationError("the new master key gave back another data key")
        connection.execute(
            update(data_keys).where(data_keys.c.id == row.id).values(wrapped=rewrapped)
        )
    return len(rows)


def count_stale_values(database: Database, keyring: Keyring) -> int:
    with database.read() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(item_versions)
                .where(item_versions.c.key_id < keyring.newest_id)
            ).scalar_one()
        )


def rewrap_values(
    database: Database,
    keyring: Keyring,
    context_of: Callable[[int, int], bytes],
    *,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt every stored value under a key older than the newest, in batches; return the
    count. Servers may write meanwhile: they seal under the newest key they find in their write
    transaction (``strongroom.db.live_keys``). A value under a key newer than ``keyring``'s (a
    rotation during the rewrap) is left as it is, not moved back to an older key."""
    done = 0
    while True:
        with database.write() as connection:
            rows = connection.execute(
                select(
                    item_versions.c.id,
                    item_versions.c.item_id,
                    item_versions.c.version,
                    item_versions.c.ciphertext,
                )
                .where(item_versions.c.key_id < keyring.newest_id)
                .limit(batch)
            ).all()
            for row in rows:
                context = context_of(row.item_id, row.version)
                plaintext = keyring.decrypt(row.ciphertext, context)
                connection.execute(
                    update(item_versions)
                    .where(item_versions.c.id == row.id)
                    .values(
                        ciphertext=keyring.encrypt(plaintext, context), key_id=keyring.newest_id
                    )
                )
        done += len(rows)
        if progress is not None and rows:
            progress(len(rows))
        if len(rows) < batch:
            return done
