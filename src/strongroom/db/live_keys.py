"""The data keys of a running server, kept in step with the database (SPEC section 6).

``strongroom keys rotate`` adds a numbered data key while servers run, and ``keys rewrap``
then re-seals every value under it, so a server must pick up new keys by itself. It does so
without a round trip on the read path:

- **Reads.** A ciphertext that names a key id above the newest one held is the sign of a
  rotation: keys are numbered upwards and never deleted, so every lower id is held already.
  The keys above the newest are then looked up (one range on the primary key; only the new
  keys are unwrapped) and the value opened. A key row commits before any value sealed under
  it, so a look-up that starts after the value was read finds its key. Catching up is
  single-flight: concurrent readers wait for one look-up, and a look-up that finds the key
  serves them all. A ciphertext that names a key that does not exist (a row forged by someone
  with write access to the database) costs one look-up that finds nothing, then fails as any
  tampered value does.
- **Writes.** The write transaction looks up keys above the newest before it seals, so a
  value written after ``keys rotate`` returned is sealed under the new key, and ``keys
  rewrap`` (which re-seals what lies under older keys) leaves nothing behind on any replica.
  It costs one index look-up that finds nothing, in a transaction that makes several.
- **Readiness.** ``/v1/sys/ready`` calls :meth:`LiveKeyring.catch_up`, so a server that cannot
  unwrap the newest key says so.

A key that the master key provider cannot unwrap (a rotation made with a new master key after
``keys change-master``, while this server still runs with the old one) makes every request that
needs it 503 ``ServiceUnavailable`` and readiness 503, until the server is restarted with the
current master key; values under the keys it holds stay readable.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import Connection

from strongroom.crypto import DecryptionError, Keyring, MasterKeyProvider, key_id_of
from strongroom.db.engine import Database
from strongroom.db.keys import unwrap_newer_keys
from strongroom.errors import ConfigurationError, ServiceUnavailableError

log = structlog.get_logger("strongroom.keys")


class LiveKeyring:
    """A :class:`Keyring` that follows rotations. Safe to use from several threads."""

    def __init__(self, keyring: Keyring, database: Database, master: MasterKeyProvider) -> None:
        """``keyring``: the keys loaded at start; ``database`` and ``master``: where newer ones
        are found and what unwraps them."""
        self._keyring = keyring
        self._database = database
        self._master = master
        self._catching_up = threading.Lock()  # one look-up at a time for readers
        self._swapping = threading.Lock()
        self._failed_above: int | None = None  # logged: keys above this one failed to load

    @property
    def current(self) -> Keyring:
        """The keys held now (replaced, never changed, when new ones arrive)."""
        return self._keyring

    @property
    def newest_id(self) -> int:
        return self._keyring.newest_id

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Open ``blob`` as :meth:`Keyring.decrypt` does, first loading the keys a rotation
        added when ``blob`` names one above the newest held. Raises DecryptionError as the
        keyring does, and ServiceUnavailableError when a new key cannot be loaded."""
        keyring = self._keyring
        try:
            return keyring.decrypt(blob, context)
        except DecryptionError:
            # Any id at or below the newest is held already or never existed: not a rotation.
            if key_id_of(blob) <= keyring.newest_id:
                raise
        return self._load_newer(needed=key_id_of(blob)).decrypt(blob, context)

    def for_write(self, connection: Connection) -> Keyring:
        """The keys to seal with inside the write transaction ``connection``: the newest key
        is the newest the database holds. Raises ServiceUnavailableError when it cannot be
        unwrapped."""
        keyring = self._keyring
        try:
            newer = unwrap_newer_keys(connection, self._master, keyring.newest_id)
        except (DecryptionError, ConfigurationError) as exc:
            raise self._unavailable(exc) from None
        return self._adopt(newer) if newer else keyring

    def catch_up(self) -> None:
        """Load any key added since; raise ServiceUnavailableError if one cannot be loaded
        (or the database does not answer)."""
        self._load_newer(needed=None)

    def _load_newer(self, needed: int | None) -> Keyring:
        with self._catching_up:
            # Whoever held the lock before may have loaded what this caller needs.
            if needed is not None and needed <= self._keyring.newest_id:
                return self._keyring
            with self._database.read() as connection:
                try:
                    newer = unwrap_newer_keys(connection, self._master, self._keyring.newest_id)
                except (DecryptionError, ConfigurationError) as exc:
                    raise self._unavailable(exc) from None
            return self._adopt(newer) if newer else self._keyring

    def _adopt(self, newer: dict[int, bytes]) -> Keyring:
        with self._swapping:  # two adopters must not put back a keyring with fewer keys
            keyring = self._keyring.with_keys(newer)
            if keyring.newest_id > self._keyring.newest_id:
                self._keyring = keyring
                log.info("data_keys_loaded", key_ids=sorted(newer), newest=keyring.newest_id)
            return self._keyring

    def _unavailable(self, exc: Exception) -> ServiceUnavailableError:
        reason = getattr(exc, "reason", None) or str(exc)
        if self._failed_above != self._keyring.newest_id:  # once, not at every request
            self._failed_above = self._keyring.newest_id
            log.error(
                "data_key_unavailable",
                message=(
                    "a data key newer than this server's cannot be unwrapped with its master "
                    "key; restart the server with the current master key"
                ),
                reason=reason,
            )
        return ServiceUnavailableError(reason=f"a newer data key cannot be unwrapped: {reason}")
