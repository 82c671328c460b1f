"""The ciphertext format of Strongroom, version 1, and the contexts it binds to.

A sealed blob::

    offset  size    field
    0       1       version, 0x01
    1       4       key_id, unsigned 32-bit big-endian: the number of the key that sealed it
    5       12      nonce, random for every seal
    17      n + 16  AES-256-GCM ciphertext of the n plaintext bytes, followed by the 16-byte tag

The associated data is ``header ‖ context``, where the header is bytes 0-4 (version ‖ key_id)
and the context is supplied by the caller. Authenticating the header means that rewriting the
key id (to make a reader pick another key) breaks the tag; authenticating the context means that
a blob copied to another row, version or purpose breaks the tag. The header has a fixed length,
so header and context cannot be confused with each other.

Contexts in use; each begins with its own ``strongroom:<purpose>:`` prefix, so a blob sealed
for one purpose never opens as another, even under the same key:

    item_context(item_id, version)   b"strongroom:item:" ‖ item_id:u64be ‖ version:u32be
    data key wrapping (master.py)    b"strongroom:data-key:" ‖ key id as ASCII decimal

Nonces are 96 random bits per seal. NIST SP 800-38D bounds random-nonce use to 2**32 seals per
key; numbered data keys and ``strongroom keys rotate`` keep each key far below that.

Every failure to open, whatever its cause, is a :class:`DecryptionError` with one fixed message.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.crypto.errors import DecryptionError

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_ID_MAX = 0xFFFF_FFFF

_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size
MIN_BLOB_SIZE = HEADER_SIZE + NONCE_SIZE + TAG_SIZE

ITEM_CONTEXT_PREFIX = b"strongroom:item:"
_ITEM_CONTEXT = struct.Struct(">QI")
_ITEM_ID_MAX = 0xFFFF_FFFF_FFFF_FFFF
_ITEM_VERSION_MAX = 0xFFFF_FFFF


def seal(
    key: bytes, key_id: int, plaintext: bytes, context: bytes, *, nonce: bytes | None = None
) -> bytes:
    """Encrypt ``plaintext`` under ``key`` (numbered ``key_id``), bound to ``context``.

    ``nonce`` exists only for known-answer tests; production callers leave it out so that a
    fresh random nonce is drawn (a repeated nonce under one key breaks GCM completely).
    Raises ValueError for a key that is not 32 bytes, a key id outside 0..2**32-1 or a nonce
    that is not 12 bytes.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"an envelope key is exactly {KEY_SIZE} bytes")
    if not 0 <= key_id <= KEY_ID_MAX:
        raise ValueError(f"a key id is an integer from 0 to {KEY_ID_MAX}")
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce is exactly {NONCE_SIZE} bytes")
    header = _HEADER.pack(VERSION, key_id)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + context)


def key_id_of(blob: bytes) -> int:
    """The key id in the header of a sealed blob, without decrypting it.

    The id is not authenticated until the blob is opened; use it to choose a key or to decide
    whether a value needs rewrapping, never as proof of anything. Raises DecryptionError for a
    blob that is too short to be sealed or has an unknown version.
    """
    if len(blob) < MIN_BLOB_SIZE:
        raise DecryptionError("truncated")
    version, key_id = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise DecryptionError("unknown version")
    return int(key_id)


def open_sealed(key_lookup: Callable[[int], bytes], blob: bytes, context: bytes) -> bytes:
    """Decrypt a blob made by :func:`seal` with the same ``context``; return the plaintext.

    ``key_lookup`` maps a key id to its 32-byte key and raises LookupError (e.g. KeyError) for
    an id it does not know. Raises DecryptionError when the blob is truncated, has an unknown
    version or key id, or fails authentication (tampering, wrong key, other context).
    """
    return open_sealed_with(lambda key_id: AESGCM(key_lookup(key_id)), blob, context)


def open_sealed_with(cipher_lookup: Callable[[int], AESGCM], blob: bytes, context: bytes) -> bytes:
    """:func:`open_sealed`, with ``cipher_lookup`` giving the key id's AES-GCM cipher: a caller
    that opens many blobs keeps one cipher per key rather than building one per blob (a
    keyring on every secret read)."""
    key_id = key_id_of(blob)
    try:
        cipher = cipher_lookup(key_id)
    except LookupError:
        raise DecryptionError("unknown key id") from None
    header = blob[:HEADER_SIZE]
    nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    try:
        return cipher.decrypt(nonce, blob[HEADER_SIZE + NONCE_SIZE :], header + context)
    except InvalidTag:
        # from None: the chained cause adds nothing and must not become a place where details go.
        raise DecryptionError("authentication failed") from None


def item_context(item_id: int, version: int) -> bytes:
    """The context that binds a secret value to its item row and version.

    ``b"strongroom:item:" ‖ item_id as u64 big-endian ‖ version as u32 big-endian`` (28 bytes),
    so a value copied to another item, or to another version of the same item, fails to open.
    Raises ValueError unless 1 <= item_id < 2**64 and 1 <= version < 2**32.
    """
    if not 1 <= item_id <= _ITEM_ID_MAX:
        raise ValueError("an item id is an integer from 1 to 2**64-1")
    if not 1 <= version <= _ITEM_VERSION_MAX:
        raise ValueError("an item version is an integer from 1 to 2**32-1")
    return ITEM_CONTEXT_PREFIX + _ITEM_CONTEXT.pack(item_id, version)
