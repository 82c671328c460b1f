"""The one exception of the cryptography core.

    Exception
    └── DecryptionError    a ciphertext or wrapped key did not open

Key providers report a master key that cannot be used (missing, malformed, unreachable, denied)
as :class:`strongroom.errors.ConfigurationError`; invalid arguments are ``ValueError``.
"""

from __future__ import annotations


class DecryptionError(Exception):
    """A ciphertext did not open: tampered, truncated, moved, or sealed under another key.

    Deliberately not a :class:`strongroom.errors.StrongroomError`: it is never the client's
    fault, so it must not be mapped to a 4xx; it signals corruption, tampering or a wrong key,
    and the request fails as an internal error. ``str()`` is always the same fixed text, so
    nothing about the blob or the key can leak through a message. ``reason`` is a coarse,
    non-secret category ("truncated", "unknown version", ...) for the server log only.
    """

    message = "ciphertext could not be decrypted"

    def __init__(self, reason: str = "authentication failed") -> None:
        super().__init__(self.message)
        self.reason = reason
