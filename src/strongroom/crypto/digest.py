"""Keyed digests of bearer secrets: tokens and API access keys.

Tokens and access keys are stored, looked up and shown in the audit trail only as
``hex(HMAC-SHA256(key, b"strongroom:token-digest:v1:" ‖ utf8(secret)))``. The key keeps a
stolen database from being enough to test guesses offline; the prefix separates these digests
from any other use of the same key.
"""

from __future__ import annotations

import hashlib
import hmac

DIGEST_PREFIX = b"strongroom:token-digest:v1:"
_KEY_SIZE = 32


class TokenDigester:
    """Computes and checks keyed digests of tokens and access keys. Its repr hides the key."""

    __slots__ = ("_prefixed",)

    def __init__(self, key: bytes) -> None:
        """Raises ValueError unless ``key`` is 32 bytes."""
        if not isinstance(key, bytes) or len(key) != _KEY_SIZE:
            raise ValueError(f"a token digest key is exactly {_KEY_SIZE} bytes")
        # The prefix is absorbed once; each digest then copies this state (cheaper than re-keying).
        self._prefixed = hmac.new(key, DIGEST_PREFIX, hashlib.sha256)

    def digest(self, secret: str) -> str:
        """The 64-character lowercase hex digest of ``secret``. Never raises for any str."""
        mac = self._prefixed.copy()
        # surrogatepass: a lone surrogate from decoded JSON must give a digest, not a 500.
        mac.update(secret.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    def matches(self, secret: str, expected_digest: str) -> bool:
        """Whether ``secret`` has digest ``expected_digest``, compared in constant time."""
        return hmac.compare_digest(
            self.digest(secret).encode("ascii"),
            expected_digest.encode("utf-8", "surrogatepass"),
        )

    def __repr__(self) -> str:
        return "TokenDigester(key=<hidden>)"
