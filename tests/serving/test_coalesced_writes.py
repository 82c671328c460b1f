"""Each response leaves in one write (serving/coalesced_writes.py), on a real TCP listener in
process, on uvloop and on asyncio's own loop; nothing written is ever held back for long."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from strongroom.serving.coalesced_writes import FLUSH_BYTES
from strongroom.serving.http_protocol import ServerHttpProtocol
from strongroom.serving.state import WRITES_COALESCED
from tests.serving.listener import Listener, app

KEEP_ALIVE_SECONDS = 30
STREAM_PAUSE_SECONDS = 1.0


class _Recording:
    """The real transport, counting what reaches it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Protocol(ServerHttpProtocol):
    writes: list[bytes]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Recording(transport, self.writes))  # type: ignore[arg-type]


async def _streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/stream``: a first chunk, a pause, the rest; ``/big``: a body larger than the hold."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        body = b"b" * (3 * FLUSH_BYTES + 7)
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [(b"content-length", b"10")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.sleep(STREAM_PAUSE_SECONDS)
    await send({"type": "http.response.body", "body": b"later"})


class _Served(Listener):
    def __init__(self, *, coalesced: bool, asgi: Callable[..., Any] = app) -> None:
        super().__init__(keep_alive=KEEP_ALIVE_SECONDS)
        self.config = uvicorn.Config(asgi, timeout_keep_alive=KEEP_ALIVE_SECONDS, lifespan="off")
        self.config.load()
        self.coalesced = coalesced
        self.writes: list[bytes] = []

    def protocol(self) -> asyncio.Protocol:
        protocol = _Protocol(
            config=self.config,
            server_state=self.state,
            app_state={WRITES_COALESCED: self.coalesced},
        )
        protocol.writes = self.writes
        return protocol


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-l")
    )
    return await asyncio.wait_for(reader.readexactly(length), 5)


REQUEST = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("coalesced", "writes_per_response"), [(True, 1), (False, 2)])
def test_a_response_is_one_write_on_every_request_of_a_kept_connection(
    run_on: Callable[[Any], None], coalesced: bool, writes_per_response: int
) -> None:
    async def body() -> None:
        served = _Served(coalesced=coalesced)
        async with served.listening():
            reader, writer = await served.connect()
            for _ in range(3):
                writer.write(REQUEST)
                assert await _response(reader) == b"served GET /a"
            writer.close()
        assert len(served.writes) == 3 * writes_per_response
        if coalesced:
            assert all(w.startswith(b"HTTP/1.1 200") for w in served.writes)
            assert all(w.endswith(b"\r\n\r\nserved GET /a") for w in served.writes)

    run_on(body)


def _one_request(
    run_on: Callable[[Any], None],
    path: bytes,
    read: Callable[[asyncio.StreamReader], Awaitable[None]],
) -> _Served:
    """Serve ``_streaming_app`` with coalesced writes, send one GET of ``path`` and let
    ``read`` check the answer; the listener, for its writes."""
    served = _Served(coalesced=True, asgi=_streaming_app)

    async def body() -> None:
        async with served.listening():
            reader, writer = await served.connect()
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await read(reader)
            writer.close()

    run_on(body)
    return served


def test_a_streamed_body_is_not_held_until_the_response_ends(
    run_on: Callable[[Any], None],
) -> None:
    async def read(reader: asyncio.StreamReader) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        # The first chunk arrives during the app's pause, not after it.
        first = await asyncio.wait_for(reader.readexactly(5), STREAM_PAUSE_SECONDS / 2)
        assert first == b"first"
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"later"

    _one_request(run_on, b"/stream", read)


def test_a_large_body_is_sent_as_it_is_written_not_held_whole(
    run_on: Callable[[Any], None],
) -> None:
    async def read(reader: asyncio.StreamReader) -> None:
        assert await _response(reader) == b"b" * (3 * FLUSH_BYTES + 7)

    served = _one_request(run_on, b"/big", read)
    # The head and the body, flushed once the hold passed its bound.
    assert len(served.writes) == 1
    assert served.writes[0].startswith(b"HTTP/1.1 200")


def test_a_protocol_level_refusal_still_reaches_the_client(
    run_on: Callable[[Any], None],
) -> None:
    async def body() -> None:
        served = _Served(coalesced=True)
        async with served.listening():
            reader, writer = await served.connect()
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)  # then the server closes
            assert answer.startswith(b"HTTP/1.1 400")
            assert answer.endswith(b'"message":"malformed HTTP request"}')
            writer.close()

    run_on(body)
