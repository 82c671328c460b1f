"""Security headers on every console response (``/ui`` and below), as plain ASGI middleware.

The policy allows only the server's own script, style and images, forbids framing and inline
code of any kind, and keeps console pages (which can hold revealed secrets and fresh access
keys) out of every cache and every Referer header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_PREFIX = "/ui"

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

_REPLACED = frozenset(name for name, _ in SECURITY_HEADERS)


def is_console_path(path: str) -> bool:
    """Whether ``path`` belongs to the console (``/ui`` or below it)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


class ConsoleSecurityHeaders:
    """Sets :data:`SECURITY_HEADERS` on every console response, replacing any earlier value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in _REPLACED
                ]
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
