"""A real TCP listener in the test's event loop, serving a tiny ASGI app with a protocol the
test chooses, as a uvicorn worker would (``tests/serving/test_protocol.py``,
``tests/serving/test_head_limits.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from uvicorn.server import ServerState


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``served <method> <path>``: whatever reaches it was served by the app."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = f"served {scope['method']} {scope['path']}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Listener:
    """Serves :func:`app`; ``protocol()`` makes each connection's protocol (overridden)."""

    def __init__(self, *, keep_alive: float) -> None:
        # uvicorn annotates an int, but its timer takes any number of seconds: these tests
        # want fractions of one.
        self.config = uvicorn.Config(app, timeout_keep_alive=keep_alive, lifespan="off")  # type: ignore[arg-type]
        self.config.load()
        self.state = ServerState()
        self.errors: list[dict[str, Any]] = []
        self.port = 0

    def protocol(self) -> asyncio.Protocol:
        raise NotImplementedError

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        make: Callable[[], asyncio.Protocol] = self.protocol
        server = await loop.create_server(make, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for connection in list(self.state.connections):
                connection.shutdown()
            # A connection the server failed to close would make this wait for ever.
            await asyncio.wait_for(server.wait_closed(), 5)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)
