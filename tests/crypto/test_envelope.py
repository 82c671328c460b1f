"""The ciphertext format, version 1: known answers, binding to header and context, failures."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from strongroom.crypto import DecryptionError, item_context, key_id_of, open_sealed, seal
from strongroom.crypto.envelope import MIN_BLOB_SIZE

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NONCE = bytes.fromhex("000102030405060708090a0b")

# Pinned once; any change here is a change of the stored format and breaks existing databases.
KNOWN_ANSWERS = [
    # (key, key_id, nonce, plaintext, context, blob hex)
    (
        KEY,
        7,
        NONCE,
        b"hunter2",
        item_context(42, 3),
        "0100000007000102030405060708090a0b2f77b86fa097f04d7e02e61d04ce73c91a3ab923f7fa35",
    ),
    (
        KEY,
        1,
        bytes(12),
        b"",
        b"",
        "0100000001000000000000000000000000b61bb43e62753a1ab69f4754da7785e7",
    ),
]


def lookup(key_id: int) -> bytes:
    return {7: KEY, 1: KEY, 2: OTHER_KEY}[key_id]


@pytest.mark.parametrize(
    ("key", "key_id", "nonce", "plaintext", "context", "expected"), KNOWN_ANSWERS
)
def test_seal_known_answer(
    key: bytes, key_id: int, nonce: bytes, plaintext: bytes, context: bytes, expected: str
) -> None:
    blob = seal(key, key_id, plaintext, context, nonce=nonce)

    assert blob.hex() == expected
    assert open_sealed(lookup, blob, context) == plaintext


def test_known_answer_layout_is_header_nonce_ciphertext_with_header_and_context_as_aad() -> None:
    key, key_id, nonce, plaintext, context, expected = KNOWN_ANSWERS[0]
    header = b"\x01" + struct.pack(">I", key_id)

    independent = header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + context)

    assert independent.hex() == expected
    assert key_id_of(bytes.fromhex(expected)) == key_id


def test_item_context_format() -> None:
    assert item_context(42, 3) == b"strongroom:item:" + bytes.fromhex("000000000000002a00000003")
    assert item_context(2**64 - 1, 2**32 - 1) == b"strongroom:item:" + b"\xff" * 12


@pytest.mark.parametrize(("item_id", "version"), [(0, 1), (1, 0), (2**64, 1), (1, 2**32), (-1, 1)])
def test_item_context_rejects_out_of_range(item_id: int, version: int) -> None:
    with pytest.raises(ValueError, match="item"):
        item_context(item_id, version)


@given(plaintext=st.binary(max_size=2048), context=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, context: bytes) -> None:
    blob = seal(KEY, 7, plaintext, context)

    assert open_sealed(lookup, blob, context) == plaintext
    assert len(blob) == MIN_BLOB_SIZE + len(plaintext)


def test_every_seal_draws_a_fresh_nonce() -> None:
    blobs = {seal(KEY, 7, b"same", b"ctx") for _ in range(50)}

    assert len(blobs) == 50


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (item_context(1, 1), item_context(2, 1)),  # another item
        (item_context(1, 1), item_context(1, 2)),  # same item, another version
    ],
    ids=["other-item", "other-version"],
)
def test_swapping_ciphertexts_between_contexts_fails(first: bytes, second: bytes) -> None:
    blob_first = seal(KEY, 7, b"value of first", first)
    blob_second = seal(KEY, 7, b"value of second", second)

    with pytest.raises(DecryptionError):
        open_sealed(lookup, blob_first, second)
    with pytest.raises(DecryptionError):
        open_sealed(lookup, blob_second, first)


def test_flipping_any_single_byte_fails() -> None:
    context = item_context(9, 1)
    blob = seal(KEY, 7, b"a secret value", context)
    # A lookup that hands out the same key for every id: a rewritten key id in the header must
    # then be caught by authentication, not by the lookup.
    for index in range(len(blob)):
        for mask in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[index] ^= mask
            with pytest.raises(DecryptionError):
                open_sealed(lambda _: KEY, bytes(tampered), context)


def test_changed_key_id_fails_authentication_even_with_the_same_key() -> None:
    context = b"ctx"
    blob = seal(KEY, 1, b"value", context)
    relabelled = blob[:1] + struct.pack(">I", 7) + blob[5:]

    with pytest.raises(DecryptionError) as caught:
        open_sealed(lookup, relabelled, context)
    assert caught.value.reason == "authentication failed"


def test_wrong_key_fails() -> None:
    blob = seal(KEY, 2, b"value", b"ctx")  # id 2 resolves to OTHER_KEY

    with pytest.raises(DecryptionError):
        open_sealed(lookup, blob, b"ctx")


@pytest.mark.parametrize("length", range(MIN_BLOB_SIZE))
def test_truncated_blob_fails(length: int) -> None:
    blob = seal(KEY, 7, b"", b"ctx")  # exactly MIN_BLOB_SIZE bytes

    with pytest.raises(DecryptionError) as caught:
        open_sealed(lookup, blob[:length], b"ctx")
    assert caught.value.reason == "truncated"


def test_truncated_ciphertext_fails_authentication() -> None:
    blob = seal(KEY, 7, b"a longer secret value", b"ctx")

    with pytest.raises(DecryptionError):
        open_sealed(lookup, blob[:-1], b"ctx")


def test_unknown_version_fails() -> None:
    blob = seal(KEY, 7, b"value", b"ctx")

    with pytest.raises(DecryptionError) as caught:
        open_sealed(lookup, b"\x02" + blob[1:], b"ctx")
    assert caught.value.reason == "unknown version"
    with pytest.raises(DecryptionError):
        key_id_of(b"\x00" + blob[1:])


def test_unknown_key_id_fails() -> None:
    blob = seal(KEY, 99, b"value", b"ctx")

    with pytest.raises(DecryptionError) as caught:
        open_sealed(lookup, blob, b"ctx")
    assert caught.value.reason == "unknown key id"


def test_decryption_error_says_nothing_specific() -> None:
    blob = seal(KEY, 7, b"value", b"ctx")
    errors = []
    for candidate in (blob[:3], b"\x09" + blob[1:], seal(KEY, 99, b"v", b"ctx"), blob[:-1]):
        with pytest.raises(DecryptionError) as caught:
            open_sealed(lookup, candidate, b"ctx")
        errors.append(caught.value)

    assert {str(error) for error in errors} == {"ciphertext could not be decrypted"}
    # No chained exception is shown with it either.
    assert all(
        error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
        for error in errors
    )


def test_key_id_of_reads_the_header() -> None:
    assert key_id_of(seal(KEY, 0, b"", b"")) == 0
    assert key_id_of(seal(KEY, 2**32 - 1, b"x", b"")) == 2**32 - 1


@pytest.mark.parametrize(
    ("key", "key_id", "nonce", "message"),
    [
        (bytes(16), 1, None, "key"),
        (bytes(33), 1, None, "key"),
        (KEY, -1, None, "key id"),
        (KEY, 2**32, None, "key id"),
        (KEY, 1, bytes(8), "nonce"),
    ],
)
def test_seal_rejects_bad_arguments(
    key: bytes, key_id: int, nonce: bytes | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        seal(key, key_id, b"x", b"ctx", nonce=nonce)
