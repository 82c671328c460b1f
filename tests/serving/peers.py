"""Helpers of the serving tests: a login pool whose login processes the test plays.

The ``peers`` fixture (conftest) makes a real :class:`LoginPool` (socket pairs and readiness
flags) and starts no process: the test plays each login process on the other end (marks it
ready, receives connections).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import REGISTRY

from strongroom.serving.handoff import ACCEPTED_AT_BYTES, LoginHandoff, LoginPool, unpack_message

LOGIN = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
SMALL_BUFFER = 4096  # the login processes' sockets fill after a few messages


def handoffs(outcome: str) -> float:
    value = REGISTRY.get_sample_value("strongroom_login_handoffs_total", {"outcome": outcome})
    return value or 0.0


class Peers:
    """The login processes' ends of the pool's socket pairs (made by :meth:`pool`)."""

    def __init__(self) -> None:
        self.ends: list[socket.socket] = []
        self.pools: list[LoginPool] = []

    def pool(self, count: int = 1) -> LoginPool:
        """A pool of ``count`` login processes, none ready yet; its workers' ends send little."""
        pool = LoginPool(count)
        for end in pool.worker_ends:
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        for end in pool.login_ends:
            end.settimeout(5)
        self.pools.append(pool)
        self.ends = list(pool.login_ends)
        return pool

    def close(self) -> None:
        for pool in self.pools:
            pool.close()

    def __getitem__(self, index: int) -> socket.socket:
        return self.ends[index]

    def first_bytes(self, index: int) -> bytes:
        """The first bytes of one passed connection (which is closed)."""
        chunk, connection = self.receive(index)
        connection.close()
        return chunk

    def receive(self, index: int) -> tuple[bytes, socket.socket]:
        """One passed connection: the first bytes and the connection."""
        chunk, _accepted_at, connection = self.receive_stamped(index)
        return chunk, connection

    def receive_stamped(self, index: int) -> tuple[bytes, float, socket.socket]:
        """One passed connection: the first bytes, its accept time and the connection."""
        message, fds, _flags, _address = socket.recv_fds(
            self.ends[index], ACCEPTED_AT_BYTES + 65536, 1
        )
        assert len(fds) == 1, (message, fds)
        accepted_at, chunk = unpack_message(message)
        return chunk, accepted_at, socket.socket(fileno=fds[0])


class Clients:
    """Client ends of the connections offered; the worker's ends closed as the protocol does."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def connection(self) -> tuple[socket.socket, socket.socket]:
        worker_end, client_end = socket.socketpair()
        client_end.settimeout(5)
        self.sockets += [worker_end, client_end]
        return worker_end, client_end

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


async def until(condition: Callable[[], Any], seconds: float = 5) -> None:
    """Let the loop run until ``condition()`` holds; fail after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            # Polled: the conditions are the handoff's and the sockets' state, no event to await.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"condition not met in {seconds} s") from None


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def ready_handoff(
    peers: Peers, count: int = 1, *, keep_when_idle: bool = False
) -> LoginHandoff:
    """A worker's handoff to a pool of ``count`` login processes, all ready."""
    pool = peers.pool(count)
    for index in range(count):
        pool.set_ready(index, True)
    return LoginHandoff(pool, keep_when_idle=keep_when_idle)
