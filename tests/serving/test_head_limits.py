"""The limits on request heads (``BoundedHttpProtocol``) on a real TCP listener, in process.

Small limits stand in for SPEC's (16 KiB a line, 64 KiB a head, 10 s): the same code with
numbers a unit test can reach quickly. The real numbers are attacked against a real server in
``tests/e2e/test_http_limits.py``. Each test runs on uvloop and on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from strongroom.serving.head_limits import REFUSED, BoundedHttpProtocol, HeadLimits
from strongroom.serving.http_protocol import ServerHttpProtocol
from strongroom.serving.login_process import PassedConnectionProtocol
from tests.serving.listener import Listener

LIMITS = HeadLimits(line_bytes=256, head_bytes=1024, timeout_seconds=1.0)
KEEP_ALIVE_SECONDS = 30  # longer than LIMITS' timeout: only the head limit can close


def refused(reason: str) -> float:
    return float(REFUSED.labels(reason)._value.get())


class Bounded(Listener):
    """Serves with ``BoundedHttpProtocol`` (or ``make``'s protocol) under :data:`LIMITS`."""

    def __init__(
        self, make: Callable[[uvicorn.Config, ServerState], asyncio.Protocol] | None = None
    ) -> None:
        super().__init__(keep_alive=KEEP_ALIVE_SECONDS)
        self.make = make

    def protocol(self) -> asyncio.Protocol:
        if self.make is not None:
            return self.make(self.config, self.state)
        return BoundedHttpProtocol(
            config=self.config, server_state=self.state, app_state={}, limits=LIMITS
        )


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader, seconds: float = 5) -> bool:
    """True when the server closes the connection (EOF, nothing more sent) within ``seconds``."""
    return await asyncio.wait_for(reader.read(), seconds) == b""


def request(path: str = "/a", *headers: bytes) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(headers) + b"\r\n"


def header(name: bytes, length: int) -> bytes:
    """A header line of exactly ``length`` bytes as the limit counts it (with ': ' and CRLF)."""
    return name + b": " + b"v" * (length - len(name) - 4) + b"\r\n"


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(data)
    return await response(reader)


def test_heads_within_the_limits_are_served_on_a_kept_connection(
    run_on: Callable[[Any], None],
) -> None:
    async def body() -> None:
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            at_limit = request("/a", header(b"X-Line", LIMITS.line_bytes))
            status, _headers, served = await exchange(reader, writer, at_limit)
            assert (status, served) == (200, b"served GET /a")
            status, _headers, served = await exchange(reader, writer, request("/b"))
            assert (status, served) == (200, b"served GET /b")
            # Many lines, together just under the head's limit.
            lines = [header(b"X-%d" % i, 100) for i in range(9)]
            status, _headers, served = await exchange(reader, writer, request("/c", *lines))
            assert (status, served) == (200, b"served GET /c")
            writer.close()

    run_on(body)


@pytest.mark.parametrize(
    "data",
    [
        # Memory exhaustion through one line over the line limit...
        pytest.param(request("/a", header(b"X-Big", LIMITS.line_bytes + 1)), id="one-line"),
        # ... through many lines, each small, together over the head's limit ...
        pytest.param(
            request("/a", *(header(b"X-%d" % i, 100) for i in range(11))), id="many-lines"
        ),
        # ... through the request target ...
        pytest.param(request("/" + "a" * LIMITS.line_bytes), id="target"),
        # ... and through a line that never ends: refused before it is complete.
        pytest.param(
            b"GET /a HTTP/1.1\r\nX-Endless: " + b"v" * 2 * LIMITS.head_bytes, id="endless"
        ),
    ],
)
def test_a_head_over_the_limits_gets_431_and_never_reaches_the_app(
    run_on: Callable[[Any], None], data: bytes
) -> None:
    async def body() -> None:
        before = refused("head_too_large")
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            status, headers, answer = await exchange(reader, writer, data)
            assert status == 431
            assert json.loads(answer)["error"] == "RequestHeaderFieldsTooLarge"
            assert headers["cache-control"] == "no-store"
            assert headers["connection"] == "close"
            assert await closed(reader)
            writer.close()
        assert refused("head_too_large") == before + 1

    run_on(body)


def test_a_head_over_the_limits_on_a_kept_connection_gets_431(
    run_on: Callable[[Any], None],
) -> None:
    async def body() -> None:
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            status, _headers, _body = await exchange(reader, writer, request("/a"))
            assert status == 200
            too_large = request("/b", header(b"X-Big", LIMITS.line_bytes + 1))
            status, _headers, _body = await exchange(reader, writer, too_large)
            assert status == 431
            assert await closed(reader)
            writer.close()

    run_on(body)


def test_malformed_http_gets_400_in_the_api_error_shape(run_on: Callable[[Any], None]) -> None:
    async def body() -> None:
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            status, headers, answer = await exchange(
                reader, writer, b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n"
            )
            assert status == 400
            assert json.loads(answer) == {
                "error": "InvalidRequest",
                "message": "malformed HTTP request",
            }
            assert headers["cache-control"] == "no-store"
            assert await closed(reader)
            writer.close()

    run_on(body)


@pytest.mark.parametrize("kept", [False, True], ids=["first-request", "kept-connection"])
def test_a_head_sent_too_slowly_is_cut_off(run_on: Callable[[Any], None], kept: bool) -> None:
    """Slowloris: a byte now and then keeps no connection past the head's time limit."""

    async def body() -> None:
        before = refused("head_timeout")
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            if kept:
                status, _headers, _body = await exchange(reader, writer, request("/a"))
                assert status == 200
            writer.write(b"GET /slow HTTP/1.1\r\n")

            async def dribble() -> None:
                for _ in range(100):
                    writer.write(b"X")
                    await asyncio.sleep(LIMITS.timeout_seconds / 10)

            dribbling = asyncio.ensure_future(dribble())
            try:
                assert await closed(reader, LIMITS.timeout_seconds * 5)
            finally:
                dribbling.cancel()
            writer.close()
        assert refused("head_timeout") == before + 1

    run_on(body)


def test_heads_that_each_finish_in_time_are_never_cut(run_on: Callable[[Any], None]) -> None:
    """The one timer per connection, set for the first head, must not cut a later one."""

    async def body() -> None:
        async with Bounded().listening() as listener:
            reader, writer = await listener.connect()
            for path in ("/a", "/b", "/c", "/d"):
                status, _headers, _body = await exchange(reader, writer, request(path))
                assert status == 200
                await asyncio.sleep(LIMITS.timeout_seconds * 0.6)
            writer.close()

    run_on(body)


def test_the_time_limit_runs_from_the_accept(run_on: Callable[[Any], None]) -> None:
    """A connection passed on after its time is up (a handoff backlog) is served only if the
    bytes already read hold a complete head; otherwise it is closed at once."""

    def passed(first_chunk: bytes) -> Callable[[uvicorn.Config, ServerState], Any]:
        def make(config: uvicorn.Config, state: ServerState) -> PassedConnectionProtocol:
            return PassedConnectionProtocol(
                first_chunk,
                config=config,
                server_state=state,
                app_state={},
                head_started=time.monotonic() - 100,
                limits=LIMITS,
            )

        return make

    async def body() -> None:
        async with Bounded(passed(request("/complete"))).listening() as listener:
            reader, writer = await listener.connect()
            status, _headers, served = await response(reader)
            assert (status, served) == (200, b"served GET /complete")
            writer.close()
        async with Bounded(passed(b"GET /partial HTTP/1.1\r\n")).listening() as listener:
            reader, writer = await listener.connect()
            assert await closed(reader, LIMITS.timeout_seconds / 2)
            writer.close()

    run_on(body)


# -- the server's protocol: Vault's LIST and the limits together ------------------------------

LISTING = b"LIST /v1/secret/metadata/app HTTP/1.1\r\nHost: x\r\n"
SERVED_LIST = b"served LIST /v1/secret/metadata/app"


def server_protocol(config: uvicorn.Config, state: ServerState) -> ServerHttpProtocol:
    return ServerHttpProtocol(config=config, server_state=state, app_state={}, limits=LIMITS)


def test_the_servers_protocol_has_vaults_list_and_the_head_limits(
    run_on: Callable[[Any], None],
) -> None:
    """Every connection of a server, in a worker or a login process, is served with
    ``ServerHttpProtocol``: LIST reaches the app and heads stay bounded on every request of a
    kept connection. Composed the other way round LIST is a 400; without the bounded
    protocol a head of any size is parsed."""

    async def body() -> None:
        async with Bounded(server_protocol).listening() as listener:
            reader, writer = await listener.connect()
            status, _headers, served = await exchange(reader, writer, LISTING + b"\r\n")
            assert (status, served) == (200, SERVED_LIST)
            status, _headers, served = await exchange(reader, writer, request("/b"))
            assert (status, served) == (200, b"served GET /b")
            status, _headers, served = await exchange(reader, writer, LISTING + b"\r\n")
            assert (status, served) == (200, SERVED_LIST)
            too_large = LISTING + header(b"X-Big", LIMITS.line_bytes + 1) + b"\r\n"
            status, headers, answer = await exchange(reader, writer, too_large)
            assert status == 431
            assert json.loads(answer)["error"] == "RequestHeaderFieldsTooLarge"
            assert headers["cache-control"] == "no-store"
            assert await closed(reader)
            writer.close()
            assert not listener.errors

    run_on(body)


@pytest.mark.parametrize(
    ("first_chunk", "expected"),
    [
        pytest.param(LISTING + b"\r\n", (200, SERVED_LIST), id="list"),
        pytest.param(
            LISTING + header(b"X-Big", LIMITS.line_bytes + 1) + b"\r\n", (431, None), id="431"
        ),
    ],
)
def test_a_login_process_serves_passed_bytes_with_list_and_the_limits(
    run_on: Callable[[Any], None], first_chunk: bytes, expected: tuple[int, bytes | None]
) -> None:
    """The bytes a worker read before passing a connection on go through both as well."""

    def make(config: uvicorn.Config, state: ServerState) -> PassedConnectionProtocol:
        return PassedConnectionProtocol(
            first_chunk, config=config, server_state=state, app_state={}, limits=LIMITS
        )

    async def body() -> None:
        async with Bounded(make).listening() as listener:
            reader, writer = await listener.connect()
            status, _headers, answer = await response(reader)
            assert status == expected[0]
            if expected[1] is not None:
                assert answer == expected[1]
            writer.close()

    run_on(body)
