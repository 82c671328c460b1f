"""The worker's side of the login handoff (``LoginHandoff``) on a real login pool whose login
processes the test plays (``peers``, from conftest): it marks them ready and receives the
connections on the other end.

Connections are Unix stream socket pairs: the worker offers one end, the test keeps the other
as the client and checks what the client sees (an answer through the passed descriptor, or the
connection closing).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from strongroom.serving import handoff as handoff_module
from strongroom.serving.handoff import LoginHandoff
from tests.serving.peers import LOGIN, Clients, Peers, handoffs, ready_handoff, run, until


def offer(handoff: LoginHandoff, clients: Clients, chunk: bytes = LOGIN) -> tuple[bool, Any]:
    """Offer a new connection; when taken, close the worker's end as the protocol does."""
    worker_end, client_end = clients.connection()
    taken = handoff.offer(worker_end, chunk)
    if taken:
        worker_end.close()
    return taken, client_end


def fill(handoff: LoginHandoff, clients: Clients) -> list[Any]:
    """Offer logins until the first login process's socket is full; their client ends."""
    sent: list[Any] = []
    before = handoffs("login_process_queued")
    for _ in range(1000):
        taken, client = offer(handoff, clients)
        assert taken
        if handoffs("login_process_queued") > before:
            assert len(handoff.processes[0].backlog) == 1
            return [*sent, client]
        sent.append(client)
    raise AssertionError("the socket never filled")


def test_a_login_is_passed_with_its_first_bytes(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        before = handoffs("login_process")
        taken, client = offer(handoff, clients)
        assert taken
        assert handoffs("login_process") == before + 1
        chunk, passed = peers.receive(0)
        assert chunk == LOGIN
        with passed:  # the login process answers through the descriptor it was given
            passed.sendall(b"HTTP/1.1 200 OK\r\n")
        assert client.recv(100) == b"HTTP/1.1 200 OK\r\n"
        assert client.recv(100) == b""  # and nobody else holds the connection
        handoff.close()

    run(body)


@pytest.mark.parametrize(
    "chunk", [b"GET /v1/sys/health HTTP/1.1\r\n\r\n", b"POST /v1/auth/lo", b""]
)
def test_other_requests_stay_with_the_worker(peers: Peers, clients: Clients, chunk: bytes) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        counts = [handoffs(o) for o in ("login_process", "worker_busy", "worker_not_ready")]
        assert offer(handoff, clients, chunk)[0] is False
        assert counts == [handoffs(o) for o in ("login_process", "worker_busy", "worker_not_ready")]
        handoff.close()

    run(body)


def test_not_ready_until_the_login_process_says_so(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        pool = peers.pool()
        handoff = LoginHandoff(pool)
        before = handoffs("worker_not_ready")
        assert offer(handoff, clients)[0] is False
        assert handoffs("worker_not_ready") == before + 1
        pool.set_ready(0, True)  # what a login process does once it serves
        assert offer(handoff, clients)[0] is True
        handoff.close()

    run(body)


def test_round_robin_between_login_processes(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers, count=2)
        for index in (0, 1, 0, 1):
            chunk = LOGIN + str(index).encode()
            assert offer(handoff, clients, chunk)[0] is True
            assert peers.first_bytes(index) == chunk
        handoff.close()

    run(body)


def test_a_login_process_being_replaced_is_skipped_and_what_it_had_waits(
    peers: Peers, clients: Clients
) -> None:
    """The supervisor clears a login process's flag when it reaps it and holds both ends of
    its socket pair: connections sent before the worker saw the flag wait in the socket for
    the next login process of that slot; later ones are served by the worker."""

    async def body() -> None:
        handoff = await ready_handoff(peers)
        taken, client = offer(handoff, clients)  # sent, not yet read by anyone
        assert taken
        peers.pools[-1].set_ready(0, False)  # reaped by the supervisor
        before = handoffs("worker_not_ready")
        assert offer(handoff, clients)[0] is False
        assert handoffs("worker_not_ready") == before + 1
        chunk, passed = peers.receive(0)  # the next login process of the slot finds it
        assert chunk == LOGIN
        with passed:
            passed.sendall(b"answered")
        assert client.recv(10) == b"answered"
        peers.pools[-1].set_ready(0, True)
        assert offer(handoff, clients)[0] is True
        handoff.close()

    run(body)


def test_a_full_socket_queues_logins_in_order(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        in_order = fill(handoff, clients)
        for index in range(3):  # later logins queue behind the first, not past it
            chunk = LOGIN + b"late" + str(index).encode()
            taken, client = offer(handoff, clients, chunk)
            assert taken
            in_order.append(client)
        assert len(handoff.processes[0].backlog) == 4
        peers[0].setblocking(False)
        received: list[socket.socket] = []

        def drain() -> bool:  # the login process catches up
            while True:
                try:
                    received.append(peers.receive(0)[1])
                except BlockingIOError:
                    return len(received) == len(in_order)

        await until(drain)
        assert not handoff.processes[0].backlog
        for number, (passed, client) in enumerate(zip(received, in_order, strict=True)):
            with passed:
                passed.sendall(b"%d" % number)
            assert client.recv(10) == b"%d" % number  # the n-th offered is the n-th received
            assert client.recv(10) == b""  # the worker kept no duplicate once it was sent
        handoff.close()

    run(body)


def test_a_full_backlog_leaves_the_login_to_the_worker(
    peers: Peers, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff_module, "MAX_BACKLOG", 2)

    async def body() -> None:
        handoff = await ready_handoff(peers)
        fill(handoff, clients)
        assert offer(handoff, clients)[0] is True  # the backlog's second place
        before = handoffs("worker_busy")
        assert offer(handoff, clients)[0] is False
        assert handoffs("worker_busy") == before + 1
        handoff.close()

    run(body)


def test_close_closes_what_waits_in_the_backlog(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        waiting = fill(handoff, clients)
        handoff.close()  # the worker stops: what never left it is closed, no answer
        assert waiting[-1].recv(10) == b""
        assert offer(handoff, clients)[0] is False

    run(body)


def test_close_closes_the_workers_ends(peers: Peers, clients: Clients) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers, count=2)
        handoff.close()
        # This worker was the only holder here: what tells a login process to finish.
        assert peers[0].recv(64) == b""
        assert peers[1].recv(64) == b""
        assert offer(handoff, clients)[0] is False

    run(body)


# -- errors other than "full" and "gone" ----------------------------------------------------


def failing_once(error: int) -> Callable[..., int]:
    real = socket.send_fds
    calls = {"n": 0}

    def send_fds(sock: socket.socket, buffers: Any, fds: Any, *args: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(error, os.strerror(error))
        return real(sock, buffers, fds, *args)

    return send_fds


def test_a_passing_send_error_does_not_retire_a_live_login_process(
    peers: Peers, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ETOOMANYREFS: the sending user has more descriptors in flight than RLIMIT_NOFILE (a
    # burst to slow login processes, without CAP_SYS_RESOURCE); ENOBUFS/ENOMEM alike.
    async def body() -> None:
        handoff = await ready_handoff(peers)
        monkeypatch.setattr(socket, "send_fds", failing_once(errno.ETOOMANYREFS))
        assert offer(handoff, clients)[0] is False  # this one: the worker serves it, fine
        assert offer(handoff, clients)[0] is True  # but the login process is alive and well
        handoff.close()

    run(body)


def test_a_passing_send_error_does_not_strand_the_backlog(
    peers: Peers, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        waiting = fill(handoff, clients)
        monkeypatch.setattr(socket, "send_fds", failing_once(errno.ETOOMANYREFS))
        peers[0].setblocking(False)
        received = 0

        def drain() -> bool:
            nonlocal received
            while True:
                try:
                    peers.receive(0)[1].close()
                    received += 1
                except BlockingIOError:
                    return received == len(waiting)

        await until(drain, seconds=3)
        handoff.close()

    run(body)


def test_no_descriptor_left_to_queue_with_leaves_the_login_to_the_worker(
    peers: Peers, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers)
        fill(handoff, clients)

        def dup(fd: int) -> int:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        monkeypatch.setattr(os, "dup", dup)
        assert offer(handoff, clients)[0] is False
        handoff.close()

    run(body)


@pytest.mark.parametrize(
    ("keep_when_idle", "worker_idle", "passed"),
    [
        (True, True, False),  # an idle worker keeps the login (and serves it on its loop)
        (True, False, True),  # a busy one hands it over
        (False, True, True),  # keeping switched off: always handed over
        (False, False, True),
    ],
)
def test_an_idle_worker_keeps_its_logins_when_told_to(
    peers: Peers, clients: Clients, keep_when_idle: bool, worker_idle: bool, passed: bool
) -> None:
    async def body() -> None:
        handoff = await ready_handoff(peers, keep_when_idle=keep_when_idle)
        before = {o: handoffs(o) for o in ("login_process", "worker_idle")}
        worker_end, _client_end = clients.connection()
        assert handoff.offer(worker_end, LOGIN, worker_idle=worker_idle) is passed
        assert handoffs("login_process") == before["login_process"] + int(passed)
        assert handoffs("worker_idle") == before["worker_idle"] + int(not passed)
        if passed:
            assert peers.first_bytes(0) == LOGIN
        # Never for a request that is not a login, idle or not.
        assert handoff.offer(worker_end, b"GET /v1/sys/health HTTP/1.1\r\n\r\n") is False
        assert handoffs("worker_idle") == before["worker_idle"] + int(not passed)
        handoff.close()

    run(body)


def test_a_login_during_a_burst_is_handed_over_even_when_the_worker_is_idle(
    peers: Peers, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logins kept by a worker that is idle for a moment would cost its loop milliseconds of CPU
    each, just when a burst's other connections arrive: within BURST_WINDOW_SECONDS of a
    handoff by a busy worker, logins are handed over too. Logins one after another, each finding
    the worker idle, are no burst: they stay with the worker (the fastest path)."""
    monkeypatch.setattr(handoff_module, "BURST_WINDOW_SECONDS", 0.2)

    async def body() -> None:
        handoff = await ready_handoff(peers, keep_when_idle=True)
        worker_end, _client = clients.connection()
        assert handoff.offer(worker_end, LOGIN, worker_idle=True) is False  # alone: kept
        assert handoff.offer(worker_end, LOGIN, worker_idle=False) is True  # a burst starts
        assert peers.first_bytes(0) == LOGIN
        assert handoff.offer(worker_end, LOGIN, worker_idle=True) is True  # part of it
        assert peers.first_bytes(0) == LOGIN
        await asyncio.sleep(0.1)
        assert handoff.offer(worker_end, LOGIN, worker_idle=True) is True  # still part of it
        assert peers.first_bytes(0) == LOGIN
        # 0.2 s after the busy handoff the burst is over, though an idle worker handed one over
        # 0.1 s ago: that handoff did not prolong it, and logins stay with the worker again.
        await asyncio.sleep(0.15)
        assert handoff.offer(worker_end, LOGIN, worker_idle=True) is False
        await asyncio.sleep(0.05)
        assert handoff.offer(worker_end, LOGIN, worker_idle=True) is False
        handoff.close()

    run(body)
