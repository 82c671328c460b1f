"""TokenDigester: pinned known answers, constant-time matching, no key in repr."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.crypto import TokenDigester

KEY = bytes(range(32))

# Pinned once: stored token and access-key digests depend on these staying the same.
KNOWN_ANSWERS = [
    ("t-example-token", "fa5acbc46bd74a9eaf7b97454e3b6269c3e11957ec66f9d2ffd0d50251859f6d"),
    ("", "9f87724df30a4f7a1dbedc427c5a74693cc8ed3bde8a51e50d57cf72a4cd71c2"),
]


@pytest.mark.parametrize(("secret", "expected"), KNOWN_ANSWERS)
def test_known_answer(secret: str, expected: str) -> None:
    assert TokenDigester(KEY).digest(secret) == expected


def test_format_is_hmac_sha256_over_a_domain_prefix() -> None:
    secret, expected = KNOWN_ANSWERS[0]
    independent = hmac.new(
        KEY, b"strongroom:token-digest:v1:" + secret.encode(), hashlib.sha256
    ).hexdigest()

    assert independent == expected
    # The prefix matters: a plain HMAC of the secret is a different value.
    assert hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest() != expected


def test_digest_depends_on_the_key() -> None:
    assert TokenDigester(KEY).digest("t-x") != TokenDigester(bytes(32)).digest("t-x")


@given(secret=st.text(), other=st.text())
def test_matches(secret: str, other: str) -> None:
    digester = TokenDigester(KEY)
    digest = digester.digest(secret)

    assert len(digest) == 64
    assert digester.matches(secret, digest)
    assert digester.matches(other, digest) == (other == secret)


@pytest.mark.parametrize(
    "expected",
    [
        "",
        "not-hex",
        "FA5ACBC46BD74A9EAF7B97454E3B6269C3E11957EC66F9D2FFD0D50251859F6D",
        "fa5acbc4",
        "é" * 64,
        "\ud800",
    ],
)
def test_matches_is_false_for_anything_but_the_exact_digest(expected: str) -> None:
    assert not TokenDigester(KEY).matches("t-example-token", expected)


def test_lone_surrogate_gets_a_digest() -> None:
    digester = TokenDigester(KEY)

    assert digester.digest("t-\ud800") != digester.digest("t-\ud801")


def test_repr_hides_the_key() -> None:
    assert repr(TokenDigester(KEY)) == "TokenDigester(key=<hidden>)"


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(33), bytearray(32)])
def test_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenDigester(key)
