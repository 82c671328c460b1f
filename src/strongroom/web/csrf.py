"""CSRF tokens for console forms (cross-site request forgery).

Every state-changing console form carries a hidden ``csrf`` field, checked on each POST:

- signed in: ``digest("strongroom:csrf:v1:session:" ‖ token_digest)`` — an HMAC, under the
  server's token-digest key, of the session the form was served to. A page on another site
  knows neither the key nor the session, so it cannot produce the value, and the value of one
  session is worthless in another;
- at sign-in, before any session: the same HMAC over a random nonce that the server sets in a
  short-lived cookie when it serves the sign-in form (login CSRF: a forged sign-in would plant
  the attacker's session in the victim's browser).

The value is derived, never stored, and compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

from strongroom.crypto import TokenDigester
from strongroom.errors import ForbiddenError

CSRF_FIELD = "csrf"
_SESSION_CONTEXT = "strongroom:csrf:v1:session:"
_LOGIN_CONTEXT = "strongroom:csrf:v1:login:"
LOGIN_NONCE_BYTES = 32


class CsrfRejected(ForbiddenError):
    """A console POST without the right CSRF token: refused with 403, nothing changed."""

    default_message = "this form has expired or did not come from this console; reload the page"


def session_csrf_token(digester: TokenDigester, token_digest: str) -> str:
    """The CSRF token of the session whose token has digest ``token_digest``."""
    return digester.digest(_SESSION_CONTEXT + token_digest)


def new_login_nonce() -> str:
    """A fresh random nonce for the pre-session cookie of the sign-in form."""
    return secrets.token_urlsafe(LOGIN_NONCE_BYTES)


def login_csrf_token(digester: TokenDigester, nonce: str) -> str:
    """The CSRF token of the sign-in form served with ``nonce``."""
    return digester.digest(_LOGIN_CONTEXT + nonce)


def verify_csrf(expected: str, unverified: str | None) -> None:
    """Return if ``unverified`` equals ``expected``; raise :class:`CsrfRejected` otherwise."""
    # Cross-site request forgery: a forged POST cannot carry the session's HMAC.
    if not unverified or not hmac.compare_digest(
        expected.encode("ascii"), unverified.encode("utf-8", "surrogatepass")
    ):
        raise CsrfRejected(reason="console form without a valid CSRF token")
