"""The worker's protocol for new connections (``LoginRoutingProtocol``) on a real TCP listener.

A tiny ASGI app stands in for Strongroom's and says which request it served; the login process
is a socket pair (``peers``) that the test plays. Each test runs on uvloop (what ``strongroom
server`` uses) and on asyncio's own loop: the protocol swap (``set_protocol``) must work on both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from strongroom.serving.handoff import LoginHandoff
from strongroom.serving.head_limits import LIMITS
from strongroom.serving.protocol import LoginRoutingProtocol
from strongroom.serving.state import LOGIN_HANDOFF
from tests.serving.listener import Listener
from tests.serving.peers import LOGIN, Peers, handoffs, ready_handoff, until

READ = b"GET /v1/secrets/value?name=/a HTTP/1.1\r\nHost: x\r\n\r\n"
SERVED_READ = b"served GET /v1/secrets/value"  # what the app answers: the worker served it
SERVED_LOGIN = b"served POST /v1/auth/login"
FIRST_BYTES_TIMEOUT = 0.3  # the listener's keep-alive timeout, which bounds the first bytes


class Worker(Listener):
    """A listener whose connections start with LoginRoutingProtocol, as in a uvicorn worker."""

    def __init__(self, handoff: LoginHandoff | None) -> None:
        super().__init__(keep_alive=FIRST_BYTES_TIMEOUT)
        self.app_state: dict[str, Any] = {} if handoff is None else {LOGIN_HANDOFF: handoff}

    def protocol(self) -> LoginRoutingProtocol:
        return LoginRoutingProtocol(
            config=self.config, server_state=self.state, app_state=self.app_state
        )


@asynccontextmanager
async def worker_with_login_process(
    peers: Peers, *, keep_when_idle: bool = False
) -> AsyncIterator[Worker]:
    """A listening worker whose login process (the test, on ``peers[0]``) is ready; on a clean
    exit, the loop reported no error."""
    handoff = await ready_handoff(peers, keep_when_idle=keep_when_idle)
    try:
        async with Worker(handoff).listening() as worker:
            yield worker
            assert not worker.errors
    finally:
        handoff.close()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    """Send one request; return the body of its response (Content-Length framed)."""
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await asyncio.wait_for(reader.readexactly(length), 5)


def test_a_request_that_is_not_a_login_is_served_by_the_worker_on_a_kept_connection(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, READ) == SERVED_READ
            # Only a connection's first bytes are looked at: a login later on a kept
            # connection is the worker's too, and so is a second read.
            assert await exchange(reader, writer, LOGIN) == SERVED_LOGIN
            assert await exchange(reader, writer, READ) == SERVED_READ
            writer.close()

    run_on(body)


def test_a_new_login_connection_goes_to_the_login_process_with_its_first_bytes(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    async def body() -> None:
        before = handoffs("login_process")
        async with worker_with_login_process(peers) as worker:
            reader, writer = await worker.connect()
            writer.write(LOGIN)
            first_bytes, connection = await asyncio.to_thread(peers.receive, 0)
            assert first_bytes == LOGIN
            assert handoffs("login_process") == before + 1
            # The test, as the login process, answers through the passed descriptor: the
            # client reads that answer, and nothing from the worker.
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlogin"
            connection.sendall(answer)
            connection.close()
            assert await asyncio.wait_for(reader.read(), 5) == answer
            writer.close()
            assert not worker.state.connections  # the worker kept nothing of it

    run_on(body)


def test_a_login_goes_over_with_its_accept_time(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    """The login process's time limit on the head runs from the worker's accept, not from
    the handoff: waiting before the first byte buys a slow sender nothing."""

    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            before_connect = time.monotonic()
            _reader, writer = await worker.connect()
            await asyncio.sleep(FIRST_BYTES_TIMEOUT / 2)
            sent_at = time.monotonic()
            writer.write(LOGIN)
            _chunk, accepted_at, connection = await asyncio.to_thread(peers.receive_stamped, 0)
            connection.close()
            assert before_connect <= accepted_at < sent_at
            writer.close()

    run_on(body)


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    """Slowloris: a silent connection must not hold a descriptor for ever."""

    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            reader, writer = await worker.connect()
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            waited = asyncio.get_running_loop().time() - started
            assert waited >= FIRST_BYTES_TIMEOUT * 0.9
            writer.close()
            # A connection that sends in time is not cut when the timer would have fired
            # (uvicorn's own keep-alive timeout starts again after each response).
            reader, writer = await worker.connect()
            await asyncio.sleep(FIRST_BYTES_TIMEOUT * 0.6)
            assert await exchange(reader, writer, READ) == SERVED_READ
            await asyncio.sleep(FIRST_BYTES_TIMEOUT * 0.6)  # past the first-bytes deadline
            assert await exchange(reader, writer, READ) == SERVED_READ
            writer.close()

    run_on(body)


def test_shutdown_closes_a_connection_that_has_sent_nothing_yet(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    """SIGTERM (SPEC section 11): uvicorn calls ``shutdown()`` on each connection in its set,
    then waits for the set to empty. A connection still waiting for its first bytes is in it
    and is closed at once, long before its first-bytes timer; invisible to the shutdown, it
    was served later by a worker that should have stopped."""

    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            worker.config.timeout_keep_alive = 30  # the first-bytes timer stays out of this
            reader, writer = await worker.connect()
            await until(lambda: len(worker.state.connections) == 1)
            for connection in list(worker.state.connections):
                connection.shutdown()
            assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
            await until(lambda: not worker.state.connections)
            writer.close()
            # A connection that has become uvicorn's leaves the set to uvicorn's own protocol.
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, READ) == SERVED_READ
            assert all(not isinstance(c, LoginRoutingProtocol) for c in worker.state.connections)
            writer.close()

    run_on(body)


def test_a_client_that_leaves_before_sending_leaves_nothing_behind(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            for _ in range(20):
                _reader, writer = await worker.connect()
                writer.close()
                await writer.wait_closed()
            # Half-closed with no byte sent: the worker closes its side too.
            reader, writer = await worker.connect()
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await asyncio.sleep(FIRST_BYTES_TIMEOUT * 1.5)  # any timer left would fire now
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, READ) == SERVED_READ
            writer.close()
            peers[0].settimeout(0.2)
            with pytest.raises(TimeoutError):
                peers[0].recv(1)  # nothing was passed to the login process

    run_on(body)


def test_an_idle_worker_that_keeps_a_login_serves_it_itself(
    run_on: Callable[[Any], None], peers: Peers
) -> None:
    async def body() -> None:
        before = handoffs("worker_idle")
        async with worker_with_login_process(peers, keep_when_idle=True) as worker:
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, LOGIN) == SERVED_LOGIN
            assert handoffs("worker_idle") == before + 1
            writer.close()

    run_on(body)


def test_without_login_processes_every_connection_is_the_workers(
    run_on: Callable[[Any], None],
) -> None:
    async def body() -> None:
        async with Worker(None).listening() as worker:
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, LOGIN) == SERVED_LOGIN
            writer.close()
            assert not worker.errors

    run_on(body)


def test_a_login_connection_with_no_room_anywhere_is_served_by_the_worker(
    run_on: Callable[[Any], None], peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        async with worker_with_login_process(peers) as worker:
            handoff = worker.app_state[LOGIN_HANDOFF]
            monkeypatch.setattr(handoff, "offer", lambda *_args, **_kwargs: False)
            reader, writer = await worker.connect()
            assert await exchange(reader, writer, LOGIN) == SERVED_LOGIN
            writer.close()

    run_on(body)


LIST = b"LIST /v1/secret/metadata/app HTTP/1.1\r\nHost: x\r\n\r\n"
SERVED_LIST = b"served LIST /v1/secret/metadata/app"


@pytest.mark.parametrize("with_login_process", [True, False])
def test_vaults_list_method_reaches_the_app_on_every_request_of_a_connection(
    run_on: Callable[[Any], None], peers: Peers, with_login_process: bool
) -> None:
    """httptools' parser knows no LIST; hvac and the bao CLI list with it (SPEC section 10)."""

    async def body() -> None:
        handoff = await ready_handoff(peers) if with_login_process else None
        try:
            async with Worker(handoff).listening() as worker:
                reader, writer = await worker.connect()
                assert await exchange(reader, writer, LIST) == SERVED_LIST  # first bytes
                assert await exchange(reader, writer, READ) == SERVED_READ
                assert await exchange(reader, writer, LIST) == SERVED_LIST  # kept connection
                assert await exchange(reader, writer, LIST) == SERVED_LIST
                # The stand-in method stays itself when a client really sends it.
                link = b"LINK /v1/secret/metadata/app HTTP/1.1\r\nHost: x\r\n\r\n"
                assert (
                    await exchange(reader, writer, link) == b"served LINK /v1/secret/metadata/app"
                )
                assert await exchange(reader, writer, READ) == SERVED_READ
                writer.close()
                assert not worker.errors
        finally:
            if handoff is not None:
                handoff.close()

    run_on(body)


@pytest.mark.parametrize("with_login_process", [True, False])
def test_heads_over_the_limits_get_431_on_every_request_of_a_connection(
    run_on: Callable[[Any], None], peers: Peers, with_login_process: bool
) -> None:
    """The worker's connections get the head limits (SPEC section 5: 16 KiB a header line)
    whether or not they waited for their first bytes, and keep them once kept alive."""
    too_large = b"GET /v1/sys/health HTTP/1.1\r\nX-Big: " + b"v" * LIMITS.line_bytes + b"\r\n\r\n"

    async def body() -> None:
        handoff = await ready_handoff(peers) if with_login_process else None
        try:
            async with Worker(handoff).listening() as worker:
                for kept in (False, True):
                    reader, writer = await worker.connect()
                    if kept:
                        assert await exchange(reader, writer, LIST) == SERVED_LIST
                    writer.write(too_large)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    assert head.startswith(b"HTTP/1.1 431 "), head
                    writer.close()
                assert not worker.errors
        finally:
            if handoff is not None:
                handoff.close()

    run_on(body)
