"""Keyring: newest key seals, the blob's key opens, rewrap detection, no keys in repr."""

from __future__ import annotations

import pytest

from strongroom.crypto import DecryptionError, Keyring, item_context, key_id_of, new_data_key, seal

KEY_1 = bytes([1]) * 32
KEY_2 = bytes([2]) * 32
CONTEXT = item_context(5, 1)


def test_newest_key_seals() -> None:
    keyring = Keyring({2: KEY_2, 1: KEY_1})

    blob = keyring.encrypt(b"value", CONTEXT)

    assert keyring.newest_id == 2
    assert keyring.key_ids == (1, 2)
    assert key_id_of(blob) == 2
    assert keyring.decrypt(blob, CONTEXT) == b"value"
    assert not keyring.needs_rewrap(blob)


def test_older_blobs_open_and_need_rewrap() -> None:
    old = Keyring({1: KEY_1}).encrypt(b"old value", CONTEXT)
    rotated = Keyring({1: KEY_1, 2: KEY_2})

    assert rotated.decrypt(old, CONTEXT) == b"old value"
    assert rotated.needs_rewrap(old)
    rewrapped = rotated.encrypt(rotated.decrypt(old, CONTEXT), CONTEXT)
    assert not rotated.needs_rewrap(rewrapped)


def test_blob_under_a_key_the_keyring_lacks_fails() -> None:
    blob = Keyring({1: KEY_1, 2: KEY_2}).encrypt(b"value", CONTEXT)

    with pytest.raises(DecryptionError) as caught:
        Keyring({1: KEY_1}).decrypt(blob, CONTEXT)
    assert caught.value.reason == "unknown key id"


def test_with_keys_adds_a_rotations_keys_and_never_replaces_one() -> None:
    keyring = Keyring({1: KEY_1})
    old = keyring.encrypt(b"old value", CONTEXT)

    rotated = keyring.with_keys({2: KEY_2, 1: bytes(32)})

    assert keyring.key_ids == (1,)  # the original is left as it was
    assert rotated.key_ids == (1, 2)
    assert rotated.newest_id == 2
    assert rotated.decrypt(old, CONTEXT) == b"old value"  # key 1 kept its key
    assert key_id_of(rotated.encrypt(b"new value", CONTEXT)) == 2


def test_same_id_other_key_fails() -> None:
    blob = seal(bytes(32), 1, b"value", CONTEXT)

    with pytest.raises(DecryptionError):
        Keyring({1: KEY_1}).decrypt(blob, CONTEXT)


def test_other_context_fails() -> None:
    keyring = Keyring({1: KEY_1})

    with pytest.raises(DecryptionError):
        keyring.decrypt(keyring.encrypt(b"value", item_context(5, 1)), item_context(5, 2))


def test_needs_rewrap_rejects_malformed_blobs() -> None:
    with pytest.raises(DecryptionError):
        Keyring({1: KEY_1}).needs_rewrap(b"\x01\x00")


def test_later_changes_to_the_callers_mapping_do_not_reach_the_keyring() -> None:
    keys = {1: KEY_1}
    keyring = Keyring(keys)
    keys[9] = KEY_2

    assert keyring.newest_id == 1


def test_repr_shows_ids_not_keys() -> None:
    text = repr(Keyring({1: KEY_1, 3: KEY_2}))

    assert text == "Keyring(key_ids=[1, 3], newest_id=3)"
    assert KEY_1.hex() not in text
    assert repr(KEY_1) not in text


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "at least one"),
        ({0: KEY_1}, "from 1"),
        ({2**32: KEY_1}, "from 1"),
        ({True: KEY_1}, "integers"),
        ({1: bytes(31)}, "data key 1 is not 32 bytes"),
        ({1: bytearray(32)}, "data key 1 is not 32 bytes"),
    ],
)
def test_invalid_keys_are_refused_without_showing_them(
    keys: dict[int, bytes], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Keyring(keys)
    assert "\\x" not in str(caught.value)


def test_new_data_key_is_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(20)}

    assert len(keys) == 20
    assert all(isinstance(key, bytes) and len(key) == 32 for key in keys)
