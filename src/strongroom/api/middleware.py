"""The request envelope, as plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware).

For every HTTP request it:
- gives the request an ID (echoed as ``X-Request-ID``) and an :class:`AuditEvent`;
- decides its source address, once, for everything downstream (``bound_ips``, the failed-login
  counters, the audit trail): the TCP peer, or the client that trusted proxies name in
  ``X-Forwarded-For`` (:mod:`strongroom.kit.forwarded`);
- refuses bodies over the limit by their Content-Length before the app reads them, and cuts
  off streamed bodies that grow past it (memory exhaustion);
- holds the response start until the event is stored: if the audit trail cannot be written,
  the client gets 503 and never the response (fail closed, SPEC section 7);
- marks every response ``Cache-Control: no-store`` (tokens, access keys and values must not
  be kept by a browser, a proxy or a client library's cache; as Vault does, for every
  response rather than a list of routes that could miss one);
- counts requests and latency for Prometheus.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import structlog
from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.api.route_label import route_label
from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter
from strongroom.errors import PayloadTooLargeError, ServiceUnavailableError
from strongroom.kit.clock import Clock
from strongroom.kit.forwarded import FORWARDED_FOR, TrustedProxies, header_values, normal_peer
from strongroom.kit.ids import new_request_id
from strongroom.kit.inflight import InFlight

log = structlog.get_logger("strongroom.http")

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request its client abandoned

REQUESTS = Counter(
    "strongroom_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
LATENCY = Histogram(
    "strongroom_http_request_seconds",
    "HTTP request latency by route",
    ["route"],
    # Fine below 10 ms, where reads live (a read takes under a millisecond): a p99 is then
    # told apart at 2, 3 or 4 ms rather than only "under 5 ms".
    buckets=(
        0.0005,
        0.001,
        0.002,
        0.003,
        0.004,
        0.005,
        0.0075,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
    ),
)


@functools.cache
def _requests_counter(route: str, status: int) -> Counter:
    """``REQUESTS``' child for a route and status, looked up once (``labels()`` checks and
    locks on every call). Routes are templates and statuses few: the cache stays small."""
    return REQUESTS.labels(route, str(status))


@functools.cache
def _latency_histogram(route: str) -> Histogram:
    """``LATENCY``'s child for a route, looked up once."""
    return LATENCY.labels(route)


# Probes, metrics and static files are not audited: they carry no identity and change nothing,
# and auditing a load balancer's health checks would drown the trail.
UNAUDITED_PREFIXES = (
    "/v1/sys/health",
    "/v1/sys/ready",
    "/metrics",
    "/ui/static/",
    "/docs/static/",
    "/favicon.ico",
)


# Added to every response's headers (SPEC section 5: a value or a token is never cached).
NO_STORE = (b"cache-control", b"no-store")


def _error_body(error: Exception) -> bytes:
    code = getattr(error, "code", "ServiceUnavailable")
    message = getattr(error, "message", "service unavailable")
    return orjson.dumps({"error": code, "message": message})


class BodyTooLarge(PayloadTooLargeError):
    """Raised from ``receive`` when a streamed body passes the limit."""


class RequestEnvelope:
    def __init__(
        self,
        app: ASGIApp,
        *,
        writer: Callable[[], AuditWriter],
        clock: Clock,
        max_body_bytes: int,
        trusted_proxies: Sequence[str] = (),
        in_flight: InFlight | None = None,
    ) -> None:
        """``in_flight``: counts the requests in progress (the login service reads it)."""
        self.app = app
        self._in_flight = in_flight or InFlight()
        self._writer = writer
        self._clock = clock
        self._max_body = max_body_bytes
        self._proxies = TrustedProxies.from_cidrs(trusted_proxies)

    def _source_ip(self, scope: Scope) -> str:
        """The one place a request's source address is decided (kit/forwarded.py)."""
        client = scope.get("client")
        peer = str(client[0]) if client else None
        if not self._proxies.trusts(peer):
            return normal_peer(peer)
        return self._proxies.client_address(peer, header_values(scope["headers"], FORWARDED_FOR))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        path: str = scope["path"]
        audited = not path.startswith(UNAUDITED_PREFIXES)
        event = AuditEvent(
            time=self._clock(),
            request_id=request_id,
            source_ip=self._source_ip(scope),
            action=f"{scope['method']} {path}"[:128],
        )
        state: dict[str, Any] = scope.setdefault("state", {})
        state["audit"] = event
        state["request_id"] = request_id

        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self._max_body:
                    # Refuse before reading: a huge body must not reach memory.
                    await self._reply(
                        send,
                        413,
                        PayloadTooLargeError(f"request bodies are at most {self._max_body} bytes"),
                        request_id,
                    )
                    event.finish(413)
                    if audited:
                        await self._audit(event)
                    return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body:
                    raise BodyTooLarge(f"request bodies are at most {self._max_body} bytes")
            return message

        replaced = False
        status_holder = [0]

        async def audited_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", []).extend(
                    ((b"x-request-id", request_id.encode()), NO_STORE)
                )
                if audited and not event.written:
                    event.finish(message["status"])
                    try:
                        await self._audit(event)
                    except ServiceUnavailableError as exc:
                        replaced = True
                        status_holder[0] = 503
                        await self._reply(send, 503, exc, request_id)
                        return
            await send(message)

        self._in_flight.count += 1
        try:
            await self.app(scope, limited_receive, audited_send)
        except ClientDisconnect:
            # The client hung up before its request was complete (a timeout, a dropped link):
            # nobody is left to answer. Recorded as nginx does (499), not as a server error.
            status_holder[0] = CLIENT_CLOSED_REQUEST
            if audited and not event.written:
                event.finish(CLIENT_CLOSED_REQUEST, "the client closed the connection")
                with contextlib.suppress(ServiceUnavailableError):
                    await self._audit(event)
        except Exception as exc:
            # A bug must not leak a traceback, nor skip the audit: answer a bare 500 here.
            log.exception("unhandled error", request_id=request_id, path=path[:256])
            if status_holder[0] == 0:
                if not event.reason:
                    event.reason = f"internal error: {type(exc).__name__}"
                await audited_send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await audited_send(
                    {
                        "type": "http.response.body",
                        "body": b'{"error":"InternalError","message":"internal error"}',
                    }
                )
        finally:
            self._in_flight.count -= 1
            route_name = route_label(scope)
            _requests_counter(route_name, status_holder[0]).inc()
            _latency_histogram(route_name).observe(time.perf_counter() - started)
            if status_holder[0] >= 400:
                log.info(
                    "request",
                    request_id=request_id,
                    method=scope["method"],
                    path=path[:256],
                    status=status_holder[0],
                    source_ip=event.source_ip,
                    access_id=event.access_id,
                    reason=event.reason,
                )

    async def _audit(self, event: AuditEvent) -> None:
        await self._writer().write(event)

    @staticmethod
    async def _reply(send: Send, status: int, error: Exception, request_id: str) -> None:
        body = _error_body(error)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    NO_STORE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
