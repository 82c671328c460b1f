"""Workers take even shares of new connections (serving/balanced_accept.py): two acceptors on
one listening socket in process, as two workers would be, on uvloop and on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from strongroom.serving import balanced_accept
from strongroom.serving.balanced_accept import (
    BalancedAcceptor,
    ConnectionShares,
    WatchedConnections,
)


class _Held(asyncio.Protocol):
    """Holds its connection open, in its worker's set, until the client closes it."""

    def __init__(self, connections: WatchedConnections) -> None:
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connections.add(self)
        transport.write(b"hello")  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)


_DUPLICATES: dict[socket.socket, list[socket.socket]] = {}


def _close(listener: socket.socket) -> None:
    for own in _DUPLICATES.pop(listener, []):
        own.close()
    listener.close()


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    return listener


def _worker(
    listener: socket.socket, shares: ConnectionShares, index: int
) -> tuple[BalancedAcceptor, WatchedConnections]:
    """A worker's acceptor on a descriptor of its own, as a forked worker has (an event loop
    watches a descriptor with one reader only), closed with ``listener``."""
    connections = WatchedConnections()
    own = listener.dup()
    _DUPLICATES.setdefault(listener, []).append(own)
    acceptor = BalancedAcceptor(
        own,
        lambda: _Held(connections),
        shares=shares,
        index=index,
        connections=connections,
    )
    return acceptor, connections


async def _connect(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections opened together, each answered (served by some worker)."""
    pairs = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count))
    )
    for reader, _ in pairs:
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
    return [writer for _, writer in pairs]


async def _end(writers: list[asyncio.StreamWriter], *held: WatchedConnections) -> None:
    """Close both ends of every connection."""
    for connections in held:
        for protocol in list(connections):
            protocol.transport.close()
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in 5 s")


def test_the_counts_are_shared_with_forked_children() -> None:
    shares = ConnectionShares(3)
    shares.publish(0, 5)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's own exit status is the assertion
        shares.publish(1, 2)
        shares.publish(2, 7)
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert shares.least_other(0) == 2
    assert shares.least_other(1) == 5
    with pytest.raises(ValueError, match="at least one worker"):
        ConnectionShares(0)


def test_connections_opened_together_are_split_evenly(run_on: Callable[[Any], None]) -> None:
    async def body() -> None:
        listener = _listener()
        shares = ConnectionShares(2)
        (first, held_first), (second, held_second) = (_worker(listener, shares, i) for i in (0, 1))
        first.start()
        second.start()
        writers = await _connect(listener.getsockname()[1], 16)
        assert (len(held_first), len(held_second)) == (8, 8)
        # Connections that close make room: the next ones go where there is room.
        for writer in writers[:4]:
            writer.close()
        await _until(lambda: len(held_first) + len(held_second) == 12)
        more = await _connect(listener.getsockname()[1], 4)
        assert (len(held_first), len(held_second)) == (8, 8)
        for acceptor in (first, second):
            acceptor.close()
            await acceptor.wait_closed()
        await _end(writers[4:] + more, held_first, held_second)
        _close(listener)

    run_on(body)


def test_a_worker_that_does_not_accept_never_keeps_clients_waiting(
    run_on: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker 1 says it holds nothing but never accepts (stuck, or dead before restarting):
    # worker 0, above its share, steps aside each time, then takes what is left waiting, all
    # of it. One connection per step aside would take 100 times 0.2 s here.
    monkeypatch.setattr(balanced_accept, "STEP_ASIDE_SECONDS", 0.2)

    async def body() -> None:
        listener = _listener()
        shares = ConnectionShares(2)
        acceptor, held = _worker(listener, shares, 0)
        acceptor.start()
        port = listener.getsockname()[1]
        first = await _connect(port, 1)
        burst = await asyncio.wait_for(_connect(port, 100), 5)
        assert len(held) == 101
        acceptor.close()
        await acceptor.wait_closed()
        assert shares.least_other(1) == 0  # a closed worker holds no share
        await _end(first + burst, held)
        _close(listener)

    run_on(body)


def test_a_closed_acceptor_accepts_nothing_more(run_on: Callable[[Any], None]) -> None:
    async def body() -> None:
        listener = _listener()
        acceptor, held = _worker(listener, ConnectionShares(2), 0)
        acceptor.start()
        acceptor.close()
        await acceptor.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        # The kernel completes the handshake (backlog) but nobody accepts or answers.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(5), 0.3)
        assert len(held) == 0
        await _end([writer])
        _close(listener)

    run_on(body)
