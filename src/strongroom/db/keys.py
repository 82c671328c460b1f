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

from sqlalchemy import Connection

from strongroom.audit.chain import ChainKey
from strongroom.crypto import (
    DecryptionError,
    Keyring,
    MasterKeyProvider,
    TokenDigester,
    derive_key,
    new_data_key,
)
from strongroom.db import key_repository
from strongroom.db.engine import Database
from strongroom.db.key_repository import WrappedKey
from strongroom.errors import ConfigurationError
from strongroom.kit.clock import utc_now
from strongroom.secrets import repository as secret_repository

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
            rows = key_repository.wrapped_keys(connection)
        if not rows:
            raise ConfigurationError("the database has no data keys: start the server first")
    else:
        with database.write() as connection:
            rows = key_repository.wrapped_keys(connection)
            if not rows:
                _insert_key(connection, master, DIGEST_KEY_ID, "digest")
                _insert_key(connection, master, 1, "encryption")
                rows = key_repository.wrapped_keys(connection)
    return _unwrap(rows, master)


def load_keys(connection: Connection, master: MasterKeyProvider) -> Keys | None:
    """Unwrap the data keys as ``connection`` sees them, writing nothing; None if there are
    none yet. Raises ConfigurationError like :func:`load_or_create_keys`."""
    rows = key_repository.wrapped_keys(connection)
    return _unwrap(rows, master) if rows else None


def _unwrap(rows: Sequence[WrappedKey], master: MasterKeyProvider) -> Keys:
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
    rows = key_repository.wrapped_keys_above(connection, newest_id)
    return {row.id: master.unwrap(row.wrapped, row.id) for row in rows}


def has_data_keys(database: Database) -> bool:
    """Whether a master key has already wrapped data keys here (the database is in use)."""
    with database.read() as connection:
        return key_repository.any_key(connection)


def _insert_key(
    connection: Connection, master: MasterKeyProvider, key_id: int, purpose: str
) -> None:
    key_repository.insert_key(
        connection, key_id, purpose, master.wrap(new_data_key(), key_id), utc_now()
    )


def rotate(database: Database, master: MasterKeyProvider) -> int:
    """Add a new newest encryption key; return its number. Nothing is re-encrypted."""
    with database.write() as connection:
        # Two rotations at once would both pick the same number (SQLite's writers queue).
        key_repository.lock_against_new_keys(connection)
        newest = key_repository.newest_key_id(connection)
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
    # No data key may be added meanwhile (keys rotate): it would stay under the old key.
    key_repository.lock_against_new_keys(connection)
    rows = key_repository.wrapped_keys(connection)
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
        key_repository.set_wrapped(connection, row.id, rewrapped)
    return len(rows)


def count_stale_values(database: Database, keyring: Keyring) -> int:
    with database.read() as connection:
        return secret_repository.count_sealed_under_older_keys(connection, keyring.newest_id)


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
            rows = secret_repository.sealed_under_older_keys(connection, keyring.newest_id, batch)
            for row in rows:
                context = context_of(row.item_id, row.version)
                plaintext = keyring.decrypt(row.ciphertext, context)
                secret_repository.reseal_version(
                    connection,
                    row.id,
                    keyring.encrypt(plaintext, context),
                    keyring.newest_id,
                )
        done += len(rows)
        if progress is not None and rows:
            progress(len(rows))
        if len(rows) < batch:
            return done
