"""Fixtures of the serving tests (helpers in ``tests/serving/peers.py``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from strongroom.serving.handoff import LoginProcess
from tests.serving.peers import SMALL_BUFFER, Clients, Peers


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Peers]:
    created = Peers()

    def start(self: LoginProcess) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        ours.setblocking(False)
        theirs.settimeout(5)
        self.channel = ours
        self.ready = False
        created.ends.append(theirs)
        created.processes.append(self)
        return ours

    monkeypatch.setattr(LoginProcess, "start", start)
    yield created
    for process in created.processes:  # a failed test may not have reached handoff.close()
        process.close_channel()
    for end in created.ends:
        end.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    made.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def run_on(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """Runs a test's coroutine on uvloop (what ``strongroom server`` uses), then on asyncio's
    own loop: the protocols must work on both."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(body())

    return run
