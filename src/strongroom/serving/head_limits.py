"""uvicorn's HTTP protocol with the limits SPEC section 5 sets on request heads.

Every connection of a server crosses :class:`BoundedHttpProtocol`, as a base of
:class:`~strongroom.serving.http_protocol.ServerHttpProtocol` (with Vault's ``LIST``): a
worker's connections get it from :class:`~strongroom.serving.protocol.LoginRoutingProtocol` (at
once, or after their first bytes), and a login process serves each connection passed to it with
a subclass. It holds for a connection's first request and for every later one on a kept
connection.

- **Size** (memory exhaustion): a header line (name, colon, value, line end) over
  :attr:`HeadLimits.line_bytes` (16 KiB), or a request head (request line and header lines)
  over :attr:`HeadLimits.head_bytes` (64 KiB), is answered ``431`` with the API's error shape
  and the connection is closed. Lines are measured as the parser completes them; the bytes
  of a head still arriving are counted too, so a line that never ends is refused at 64 KiB
  rather than buffered without bound.
- **Time** (slowloris): a request head must be complete within
  :attr:`HeadLimits.timeout_seconds` (10 s) of the server starting to wait for it: when the
  connection was accepted (for its first request, including the worker's wait for its first
  bytes and a login's time in the handoff) and when the previous response was sent (on a kept
  connection). Otherwise the connection is closed without an answer, as nginx and Go's
  ``ReadHeaderTimeout`` do: a client that sends a byte a second holds nothing for long. An
  idle kept connection is still closed after uvicorn's shorter keep-alive timeout.
- **Malformed HTTP**: ``400`` with the API's error shape (uvicorn answers in plain text).

Protocol-level answers carry ``Cache-Control: no-store`` and ``Connection: close``; they never
reach the app, so they are counted (``strongroom_http_connections_refused_total``) rather than
audited: no request was made. After such an answer the connection's sending side is shut and
what the client still sends is read and dropped (at most :data:`LINGER_BYTES`, for at most
:data:`LINGER_SECONDS`) before it is closed: closed with unread bytes, the socket would send a
reset that can destroy the answer in the client's buffer before the client reads it.

The deadline costs a request one clock read: a connection keeps at most one timer, which,
when it fires for a head that has since completed, goes back to sleep until the deadline of
the head in progress, if any.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from prometheus_client import Counter
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

REFUSED = Counter(
    "strongroom_http_connections_refused_total",
    "Connections closed at the HTTP layer, before any request reached the app",
    # head_too_large (431) | head_timeout (slow sender) | invalid_http (400)
    ["reason"],
)
_COUNT = {
    reason: REFUSED.labels(reason) for reason in ("head_too_large", "head_timeout", "invalid_http")
}


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bounds on a request head (SPEC section 5); tests pass smaller ones."""

    line_bytes: int = 16 * 1024
    head_bytes: int = 64 * 1024
    timeout_seconds: float = 10.0


LIMITS = HeadLimits()
# After a refusal: how much of what the client still sends is read and dropped, and for how
# long, so that it sees the answer rather than a reset (the rest of its head and a body up to
# the 1 MiB body limit; a client sending more is cut off, reset and all).
LINGER_BYTES = 1024 * 1024 + 64 * 1024
LINGER_SECONDS = 2.0
# What a header line costs besides its name and value: ": " and "\r\n".
_LINE_OVERHEAD = 4


def _answer(status: int, code: str, message: str, default_headers: bytes) -> bytes:
    """A whole response: ``status`` with ``{"error": code, "message": message}``."""
    body = orjson.dumps({"error": code, "message": message})
    return b"".join(
        (
            STATUS_LINE[status],
            default_headers,
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"cache-control: no-store\r\n",
            b"connection: close\r\n\r\n",
            body,
        )
    )


class HeadTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing a head that broke a size limit."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding request heads in size and time.

    ``head_started``: ``time.monotonic()`` when the server began waiting for the connection's
    first head (its accept); None for now. ``limits``: :data:`LIMITS` unless a test says.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        head_started: float | None = None,
        limits: HeadLimits = LIMITS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._head_started = head_started
        # Whether the bytes the parser takes next belong to a request head (before the first
        # request, and from a request's end until the next one's headers are complete).
        self._in_head = True
        self._head_received = 0  # bytes received while in a head (never more than its size)
        self._head_size = 0  # the current head's request target and completed header lines
        self._refusal: tuple[int, str, str] | None = None
        self._head_deadline: float | None = None  # loop time; None: not waiting for a head
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_left: int | None = None  # after a refusal: bytes still to drop
        self._linger_timer: asyncio.TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        waited = 0.0 if self._head_started is None else time.monotonic() - self._head_started
        # Already past it (a login queued long in a handoff backlog): the timer fires on the
        # next turn of the loop, after the bytes read so far had their chance to finish the head.
        self._await_head(self.loop.time() + max(self._limits.timeout_seconds - waited, 0.0))

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline = None
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head limits and the API's error shape for malformed HTTP."""
        if self._linger_left is not None:
            self._linger_left -= len(data)  # refused already: dropped
            if self._linger_left < 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            # HeadTooLargeError from a callback reaches here wrapped; _refusal says which.
            refusal = self._refusal or (400, "InvalidRequest", "malformed HTTP request")
            self._refuse(*refusal)
            return
        if self._in_head and self._head_received > self._limits.head_bytes:
            # Memory exhaustion: a head (or one endless line) still arriving past the limit.
            self._refuse(431, *self._too_large("the request head"))

    def send_400_response(self, msg: str) -> None:
        """uvicorn's other paths to a 400 answer in the API's shape too."""
        self._refuse(400, "InvalidRequest", "malformed HTTP request")

    # -- the parser's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self._limits.line_bytes:
            self._stop(self._too_large("the request target"))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + _LINE_OVERHEAD
        self._head_size += line
        # Memory exhaustion through one huge header, or through many small ones.
        if line > self._limits.line_bytes:
            self._stop(self._too_large("a header line"))
        if self._head_size > self._limits.head_bytes:
            self._stop(self._too_large("the request head"))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_deadline = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # Whatever follows is the next request's head (pipelined, or on the kept connection).
        self._in_head = True
        self._head_received = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # With no request queued behind this response, the server now waits on the client:
        # the next head's time starts (a queued one's starts when its response is sent).
        waiting = not self.pipeline
        super().on_response_complete()
        if waiting and self._in_head and not self.transport.is_closing():
            self._await_head(self.loop.time() + self._limits.timeout_seconds)

    # -- limits ----------------------------------------------------------------------------

    def _too_large(self, what: str) -> tuple[str, str]:
        limits = self._limits
        return (
            "RequestHeaderFieldsTooLarge",
            f"{what} is too large: header lines are at most {limits.line_bytes} bytes each "
            f"and {limits.head_bytes} bytes in all",
        )

    def _stop(self, refusal: tuple[str, str]) -> None:
        self._refusal = (431, *refusal)
        raise HeadTooLargeError(refusal[1])

    def _await_head(self, deadline: float) -> None:
        self._head_deadline = deadline
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(deadline, self._on_head_timer)

    def _on_head_timer(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.transport.is_closing():
            return  # the head it was set for completed, and no other is awaited
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._on_head_timer)
            return
        # Slowloris: the head is not complete in time. Nothing to answer (nginx, Go).
        self._head_deadline = None
        _COUNT["head_timeout"].inc()
        self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` (unless a response is under way) and close the connection."""
        self._head_deadline = None
        _COUNT["head_too_large" if status == 431 else "invalid_http"].inc()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # A response already started (a pipelined request's) leaves no room for an answer.
        if cycle is None or not cycle.response_started or cycle.response_complete:
            defaults = b"".join(
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            )
            self.transport.write(_answer(status, code, message, defaults))
            if self.transport.can_write_eof():
                self.transport.write_eof()  # sent after the answer; the client's EOF closes
                self._linger_left = LINGER_BYTES
                self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
                return
        self.transport.close()
