"""Security headers on every console response (``/ui`` and below) and on the API's reference
(``/docs`` and below), as plain ASGI middleware.

The policy allows only the server's own script, style and images, forbids framing and inline
code of any kind, and keeps console pages (which can hold revealed secrets and fresh access
keys) out of every cache and every Referer header. ``/docs`` gets the same headers with a
policy that adds only what Swagger UI needs (:data:`DOCS_CONTENT_SECURITY_POLICY`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_PREFIX = "/ui"
DOCS_PREFIX = "/docs"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # Cross-site scripting: no inline script or style, no foreign origin, no <base> hijack.
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    # MIME sniffing: a response is only ever what its Content-Type says.
    (b"x-content-type-options", b"nosniff"),
    # Leaking URLs (item names, filters) to other sites through the Referer header.
    (b"referrer-policy", b"no-referrer"),
    # Secrets left in shared or back-button caches.
    (b"cache-control", b"no-store"),
    # Clickjacking, for browsers that predate frame-ancestors.
    (b"x-frame-options", b"DENY"),
)

# Swagger UI fetches /openapi.json and sends the requests of "Try it out" (connect-src, this
# server only), and its stylesheet draws its icons from data: URLs (images only: a data: URL
# never runs as script here). Everything else is the console's policy.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

DOCS_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode()),
    *SECURITY_HEADERS[1:],
)

_REPLACED = frozenset(name for name, _ in SECURITY_HEADERS)
# One test per request for everything else (the API's reads among it).
_PREFIXES = (CONSOLE_PREFIX, DOCS_PREFIX)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_console_path(path: str) -> bool:
    """Whether ``path`` belongs to the console (``/ui`` or below it)."""
    return _under(path, CONSOLE_PREFIX)


def headers_for(path: str) -> tuple[tuple[bytes, bytes], ...] | None:
    """The security headers of a response to ``path``; None outside the console and /docs."""
    if not path.startswith(_PREFIXES):
        return None
    if _under(path, CONSOLE_PREFIX):
        return SECURITY_HEADERS
    if _under(path, DOCS_PREFIX):
        return DOCS_SECURITY_HEADERS
    return None


class ConsoleSecurityHeaders:
    """Sets :func:`headers_for` a path on every response to the console and /docs, replacing
    any earlier value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        security_headers = headers_for(scope["path"]) if scope["type"] == "http" else None
        if security_headers is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in _REPLACED
                ]
                headers.extend(security_headers)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
