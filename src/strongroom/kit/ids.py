"""Generation of the identifiers of SPEC section 2: access IDs, tokens, access keys, assoc IDs."""

from __future__ import annotations

import secrets
import string

_ACCESS_ID_ALPHABET = string.ascii_lowercase + string.digits

TOKEN_PREFIX = "t-"  # noqa: S105 - a prefix, not a credential
ACCESS_ID_PREFIX = "p-"


def new_access_id() -> str:
    """``p-`` + 12 characters of ``[a-z0-9]`` (about 62 bits; uniqueness is enforced by the DB)."""
    return ACCESS_ID_PREFIX + "".join(secrets.choice(_ACCESS_ID_ALPHABET) for _ in range(12))


def new_token() -> str:
    """``t-`` + 43 URL-safe characters carrying 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_access_key() -> str:
    """An API key: 256 random bits, URL-safe, shown to its owner once."""
    return secrets.token_urlsafe(32)


def new_assoc_id() -> str:
    """``ass-`` + 20 characters, as association IDs look in the established consoles."""
    return "ass-" + "".join(secrets.choice(_ACCESS_ID_ALPHABET) for _ in range(20))


def new_request_id() -> str:
    return secrets.token_hex(8)
