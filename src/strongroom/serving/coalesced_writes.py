"""One write per response: a response's head and body leave the server together.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body when
the app sends ``http.response.body``, and uvloop sends each write at once: two system calls and
two TCP segments for every small JSON answer, the second of which the client waits for (on a
secret read, a tenth of a worker's CPU went to these sends). :class:`CoalescedWritesProtocol`
gives uvicorn a transport that holds what is written (:class:`CoalescedWrites`) and sends it
as one write when:

- the response is complete (uvicorn's ``on_response_complete``): the usual case, one write;
- the event loop comes round (``call_soon``): anything written and not followed by a
  complete response within the same turn (a streamed body, ``100 Continue``) leaves at most one
  turn later, never waits for the client;
- what is held passes :data:`FLUSH_BYTES`: a large body is not copied and held whole;
- the connection closes or half-closes (``close``, ``write_eof``): held bytes go first.

Flow control is untouched: the real transport still tells the protocol when its buffer is full.

``COALESCED_WRITES=false`` (the lifespan state's :data:`~strongroom.serving.state.
WRITES_COALESCED`) gives uvicorn the transport itself, writes and all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strongroom.serving.state import WRITES_COALESCED

# Held bytes past this are sent at once (a static file's chunks are 64 KiB).
FLUSH_BYTES = 64 * 1024


class CoalescedWrites:
    """A transport that holds writes until :meth:`flush` (see the module docstring); every
    other call goes to the real transport."""

    __slots__ = ("_flush_soon", "_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_soon: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_BYTES:
            self.flush()
        elif self._flush_soon is None:
            self._flush_soon = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held, as one write."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        held = self._held
        if not held:
            return
        self._held = []
        self._held_bytes = 0
        self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def discard(self) -> None:
        """Drop what is held (the connection is gone: nobody can receive it)."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        self._held = []
        self._held_bytes = 0

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self.discard()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, pause_reading, resume_reading, set_protocol, can_write_eof, ...
        return getattr(self._transport, name)


class CoalescedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response once (module docstring), when the
    lifespan state asks for it (``app_state[WRITES_COALESCED]``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's arguments (and those of the protocols after this one in the MRO)."""
        super().__init__(*args, **kwargs)
        self._coalesce = bool(self.app_state.get(WRITES_COALESCED, False))
        self._writes: CoalescedWrites | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._coalesce:
            self._writes = CoalescedWrites(transport, self.loop)
            transport = self._writes  # type: ignore[assignment]
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._writes is not None:
            self._writes.discard()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        if self._writes is not None:
            self._writes.flush()
        super().on_response_complete()
