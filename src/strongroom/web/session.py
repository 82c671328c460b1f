"""The console session: the login token itself, kept in a cookie, resolved on every request.

The cookie ``strongroom_session`` holds the token that ``/v1/auth/login`` would return; the
server keeps nothing else. Each request resolves it through the same token service as a bearer
token, so a revoked or expired token, or a deleted auth method, ends the session at once, and
the roles and rules that apply are exactly those of the API. The cookie lives as long as the
token (``Max-Age``), only under ``/ui``, out of reach of scripts (``HttpOnly``), never on a
cross-site request (``SameSite=Strict``) and, when the request came over TLS, never over plain
HTTP (``Secure``: :func:`cookies_secure`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from strongroom.api.services import Services, audit_event_of, services_of
from strongroom.auth.tokens import Caller
from strongroom.errors import UnauthorizedError
from strongroom.kit.forwarded import FORWARDED_PROTO, header_values
from strongroom.rbac import Capability, RuleType
from strongroom.web.csrf import session_csrf_token

SESSION_COOKIE = "strongroom_session"
LOGIN_COOKIE = "strongroom_login"
COOKIE_PATH = "/ui"
LOGIN_NONCE_MAX_AGE = 3600
HOME = "/ui/secrets"

# Where a sign-in may send the browser afterwards: console paths only.
_SAFE_NEXT = re.compile(r"/ui/[A-Za-z0-9._~%/?=&+-]{0,1000}")


class SignInRequiredError(Exception):
    """No valid session: the console answers with a redirect to the sign-in page."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("sign in required")
        self.expired = expired


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in console user: the caller behind the cookie and its forms' CSRF token."""

    caller: Caller
    csrf: str

    def may_read_audit(self, services: Services) -> bool:
        now = services.clock()
        return self.caller.rules.may(Capability.READ, RuleType.AUDIT, "/", now)


async def current_session(request: Request) -> Session:
    """Resolve the session cookie to a :class:`Session`; raise SignInRequiredError if there is none.

    Records the caller in the request's audit event, like a bearer token would.
    """
    services = services_of(request)
    event = audit_event_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequiredError()
    try:
        caller = await services.authenticate(token, event)
    except UnauthorizedError as exc:
        event.reason = exc.reason
        raise SignInRequiredError(expired=True) from None
    session = Session(caller, session_csrf_token(services.keys.digester, caller.token_digest))
    request.state.console_session = session
    return session


def known_session(request: Request) -> Session | None:
    """The session that :func:`current_session` resolved for this request, if any."""
    session: Session | None = getattr(request.state, "console_session", None)
    return session


def safe_next(unverified: str | None) -> str:
    """A console path to go to after sign-in; anything else becomes the home page."""
    # Open redirect: only same-origin console paths, never "//host", "\\" or "..".
    if (
        unverified
        and _SAFE_NEXT.fullmatch(unverified)
        and "//" not in unverified
        and ".." not in unverified
    ):
        return unverified
    return HOME


def cookies_secure(request: Request) -> bool:
    """Whether this response's cookies get ``Secure`` (SPEC section 11): the request came over
    TLS, to this server or as ``X-Forwarded-Proto: https`` from a trusted proxy
    (``kit/forwarded.py``); or ``BEHIND_HTTPS`` says that every request does.

    A session cookie without ``Secure`` set over HTTPS would also be sent by the browser over
    plain HTTP to the same host, where anyone on the path reads the token in it.
    """
    services = services_of(request)
    if services.settings.behind_https:
        return True
    scope = request.scope
    client = scope.get("client")
    return services.trusted_proxies.came_over_tls(
        str(client[0]) if client else None,
        str(scope.get("scheme", "http")),
        header_values(scope["headers"], FORWARDED_PROTO),
    )


def set_session_cookie(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    """Store the token in the session cookie for ``max_age`` seconds (the token's lifetime)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(0, max_age),
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )


def set_login_cookie(response: Response, nonce: str, *, secure: bool) -> None:
    """The pre-session nonce that the sign-in form's CSRF token is bound to."""
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_NONCE_MAX_AGE,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_login_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(
        LOGIN_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
