"""Fixtures of the serving tests (helpers in ``tests/serving/peers.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

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


@pytest.fixture(params=["uvloop", "asyncio"])
def run_on(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """Runs a test's coroutine on uvloop (what ``strongroom server`` uses), then on asyncio's
    own loop: the protocols must work on both."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(body())

    return run
