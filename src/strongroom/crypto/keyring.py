"""Numbered data keys: seal under the newest, open with whichever key a blob names.

Data keys are random 32-byte AES-256-GCM keys numbered from 1 upwards. They are stored wrapped
by the master key provider (see :mod:`strongroom.crypto.master`) and unwrapped into a
:class:`Keyring` at start-up. Rotation adds a key with a higher number; everything new is
sealed under it at once, and older blobs stay readable until a rewrap re-seals them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.crypto.envelope import KEY_ID_MAX, KEY_SIZE, key_id_of, open_sealed_with, seal


def new_data_key() -> bytes:
    """A fresh data key: 32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_SIZE)


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` drawn from the 32-byte ``secret`` (HKDF-SHA256, RFC 5869,
    no salt, ``purpose`` as the info). Keys for different purposes are independent: knowing
    one tells nothing of ``secret`` or of another. Raises ValueError for a bad ``secret``."""
    if not isinstance(secret, bytes) or len(secret) != KEY_SIZE:
        raise ValueError(f"a key is derived from exactly {KEY_SIZE} secret bytes")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=purpose).derive(secret)


class Keyring:
    """An immutable set of numbered data keys. Its repr shows the key ids only."""

    __slots__ = ("_ciphers", "_keys", "_newest_id")

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        """Take the keys by id. Raises ValueError for no keys, an id outside 1..2**32-1 or a
        key that is not 32 bytes (the message names the id, never the key)."""
        if not keys:
            raise ValueError("a keyring needs at least one data key")
        checked: dict[int, bytes] = {}
        for key_id, key in keys.items():
            if isinstance(key_id, bool) or not isinstance(key_id, int):
                raise ValueError("data key ids are integers")
            if not 1 <= key_id <= KEY_ID_MAX:
                raise ValueError(f"data key ids run from 1 to {KEY_ID_MAX}, not {key_id}")
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise ValueError(f"data key {key_id} is not {KEY_SIZE} bytes")
            checked[key_id] = key
        # A private copy: a caller mutating its mapping afterwards cannot swap keys under us.
        self._keys = checked
        self._newest_id = max(checked)
        # One cipher per key, built once: a secret read then opens its value without building
        # one (about 2 µs each).
        self._ciphers = {key_id: AESGCM(key) for key_id, key in checked.items()}

    @property
    def newest_id(self) -> int:
        """The highest key id: the key that :meth:`encrypt` uses."""
        return self._newest_id

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id held, ascending."""
        return tuple(sorted(self._keys))

    def with_keys(self, keys: Mapping[int, bytes]) -> Keyring:
        """A keyring holding these keys and ``keys`` (a rotation's new ones); this one is left
        as it is. A key id held already keeps its key: a key, once used to seal, never changes
        under its number. Raises ValueError as the constructor does."""
        return Keyring({**keys, **self._keys})

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """Seal ``plaintext`` for ``context`` under the newest key (format: envelope v1)."""
        return seal(self._keys[self._newest_id], self._newest_id, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Open a blob with the key its header names. Raises DecryptionError on any failure,
        including a key id this keyring does not hold."""
        return open_sealed_with(self._ciphers.__getitem__, blob, context)

    def needs_rewrap(self, blob: bytes) -> bool:
        """Whether ``blob`` is sealed under a key other than the newest. Reads the header only;
        raises DecryptionError for a blob too short to be sealed or of an unknown version."""
        return key_id_of(blob) != self._newest_id

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self.key_ids)}, newest_id={self._newest_id})"
