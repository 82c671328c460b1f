"""The deadline of the database work a caller waits for, carried to where that work runs.

:class:`~strongroom.db.work.DatabaseWork` gives up waiting for work on PostgreSQL after
``DB_TIMEOUT_SECONDS`` (the caller answers 503), but the thread doing it may still be stuck in a
round trip to a database that does not answer. When that round trip finally returns, the work
must not go on to change anything its caller has already reported as failed: it runs with the
caller's deadline in a context variable, and :class:`~strongroom.db.engine.Database` checks it
when a connection is taken and again just before COMMIT (a write past it rolls back).

No deadline (the CLI, tests, start-up, SQLite's inline work) means no check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from strongroom.errors import ServiceUnavailableError

_DEADLINE: ContextVar[float | None] = ContextVar("strongroom_db_deadline", default=None)


@contextmanager
def within(deadline: float) -> Iterator[None]:
    """Run the block's database work under ``deadline`` (a ``time.monotonic()`` value)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check(what: str) -> None:
    """ServiceUnavailableError if the current deadline has passed (its caller gave up)."""
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise ServiceUnavailableError(
            "the database did not answer in time",
            reason=f"{what} abandoned: past the DB_TIMEOUT_SECONDS deadline of its request",
        )
