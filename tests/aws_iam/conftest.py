"""Fixtures for AWS IAM login tests: a stub STS per test (moto is in the root conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.moto_world import APP_SESSION, MotoWorld
from tests.support.stub_sts import StubSts

__all__ = ["APP_SESSION", "MotoWorld"]


@pytest.fixture
def stub_sts() -> Iterator[StubSts]:
    with StubSts() as stub:
        yield stub


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
