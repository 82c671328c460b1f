"""A scripted STS on a loopback port, for the failures moto cannot produce.

Each request takes the next action from a queue (``enqueue``), or the default action when the
queue is empty, and is recorded before the action runs, so a test can assert how many requests
arrived and what they carried (e.g. that none did).

Actions:

    Reply(status, body, content_type, delay, headers)   answer (after ``delay`` seconds)
    Reset(delay)                                         drop the connection with a TCP RST
    redirect(location, status=302)                       a Reply with a Location header

Canned bodies: :func:`identity_xml`, :func:`error_xml`, :data:`BILLION_LAUGHS`,
:data:`EXTERNAL_ENTITY`, :data:`NOT_XML`.

It is a ``ThreadingHTTPServer``: every connection is answered with ``Connection: close``, and
``stop()`` cuts short any pending delay so tests never wait for a sleeping handler.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.support.moto_sts import DEFAULT_ACCOUNT_ID

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
MAX_REQUEST_BODY = 64 * 1024


def identity_xml(
    arn: str = f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/app-role/i-0abc1234567890def",
    user_id: str = "AROAEXAMPLEROLEID0001:i-0abc1234567890def",
    account: str = DEFAULT_ACCOUNT_ID,
) -> bytes:
    """A GetCallerIdentity answer exactly as STS writes it."""
    return (
        f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>'
        f"<Arn>{arn}</Arn><UserId>{user_id}</UserId><Account>{account}</Account>"
        "</GetCallerIdentityResult><ResponseMetadata><RequestId>"
        "01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    ).encode()


def error_xml(code: str, message: str = "error", *, moto_style: bool = False) -> bytes:
    """An STS error document; ``moto_style`` nests it the way moto does."""
    error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    if moto_style:
        return f"<ErrorResponse><Errors>{error}</Errors></ErrorResponse>".encode()
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}">{error}'
        "<RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ErrorResponse>"
    ).encode()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1 or "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n"
    + f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>'
    "<Arn>&lol9;</Arn><UserId>x</UserId><Account>123456789012</Account>"
    "</GetCallerIdentityResult></GetCallerIdentityResponse>".encode()
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>'
    "<Arn>&xxe;</Arn><UserId>x</UserId><Account>123456789012</Account>"
    "</GetCallerIdentityResult></GetCallerIdentityResponse>".encode()
)
NOT_XML = b'{"GetCallerIdentityResponse": {"Arn": "arn:aws:iam::123456789012:root"}}'


@dataclass(frozen=True)
class Reply:
    """Answer with ``status`` and ``body`` after ``delay`` seconds."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "text/xml"
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Reset:
    """Abort the connection (TCP RST) without answering, after ``delay`` seconds."""

    delay: float = 0.0


Action = Reply | Reset


def redirect(location: str, status: int = 302) -> Reply:
    """A redirect to ``location`` (which a correct client never follows)."""
    return Reply(status=status, body=b"", content_type=None, headers=(("Location", location),))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub received it."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    stub: StubSts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_REQUEST_BODY)) if length > 0 else b""
        stub = self.server.stub
        action = stub._record_and_next(
            RecordedRequest(self.command, self.path, tuple(self.headers.items()), body)
        )
        self.close_connection = True
        if action.delay and stub._stopping.wait(action.delay):
            return
        if isinstance(action, Reset):
            # SO_LINGER 0: close() sends RST instead of FIN, so the client sees a reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.send_response(action.status)
        if action.content_type is not None:
            self.send_header("Content-Type", action.content_type)
        for name, value in action.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(action.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(action.body)

    do_POST = _handle  # http.server dispatches on do_<METHOD>
    do_GET = _handle


class StubSts:
    """A scripted STS on ``127.0.0.1:<free port>``; use it as a context manager."""

    def __init__(self, default: Action | None = None) -> None:
        self.default: Action = default or Reply(200, identity_xml())
        self._queue: deque[Action] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> StubSts:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubSts:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def enqueue(self, *actions: Action) -> None:
        """Answer the next requests with ``actions``, in order, then fall back to the default."""
        with self._lock:
            self._queue.extend(actions)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def _record_and_next(self, request: RecordedRequest) -> Action:
        with self._lock:
            self._requests.append(request)
            return self._queue.popleft() if self._queue else self.default
