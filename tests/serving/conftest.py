"""Fixtures of the serving tests (helpers in ``tests/serving/peers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving.peers import Clients, Peers


@pytest.fixture
def peers() -> Iterator[Peers]:
    created = Peers()
    yield created
    created.close()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    made.close()
