"""Helpers of the serving tests: socket pairs standing in for login processes.

The ``peers`` fixture (conftest) replaces ``LoginProcess.start`` so that no process is spawned;
the test plays the login process on the other end (sends ``ready``, receives connections,
exits).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import REGISTRY

from strongroom.serving.handoff import READY, LoginHandoff, LoginProcess, unpack_message

LOGIN = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
SMALL_BUFFER = 4096  # the login processes' sockets fill after a few messages


def handoffs(outcome: str) -> float:
    value = REGISTRY.get_sample_value("strongroom_login_handoffs_total", {"outcome": outcome})
    return value or 0.0


class Peers:
    """The login processes' ends of the socket pairs, in the order the worker created them."""

    def __init__(self) -> None:
        self.ends: list[socket.socket] = []
        self.processes: list[LoginProcess] = []

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
        message, fds, _flags, _address = socket.recv_fds(self.ends[index], 65536 + 8, 1)
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
    handoff = LoginHandoff(count, nice=0, keep_when_idle=keep_when_idle).start()
    for index in range(count):
        peers[index].send(READY)
    await until(lambda: all(process.ready for process in handoff.processes))
    return handoff
