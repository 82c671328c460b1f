"""Fixtures of the serving tests (helpers in ``tests/serving/peers.py``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

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
