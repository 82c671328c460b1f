"""Where synchronous database work runs, for callers on an event loop: the one seam.

Routes, the console and logins hand every synchronous database call (a service method, a
SQLAlchemy block) to :meth:`DatabaseWork.run` (or :meth:`DatabaseWork.run_async` for a service
coroutine that mixes such calls with awaits). What happens depends on the database
(``serving/placement.py`` decides, ``database_work_in_threads``):

- SQLite: the work runs inline, on the caller's loop. A statement on a local file costs
  microseconds, less than a hop to a thread (``bench/``), and it cannot hang on a network.
- PostgreSQL: the work runs on one of a few threads of this process, and the caller waits at
  most ``DB_TIMEOUT_SECONDS``: then it gets ServiceUnavailableError (503) even when the thread
  is still stuck in a round trip to a database that does not answer. The thread is left to
  finish (its connection's bounds, ``engine.postgres_options``, usually end it); the work
  carries its caller's deadline (``db/deadline.py``), so it takes no connection once the
  caller has given up and never commits after it: a request answered 503 changed nothing.
  Work still queued for a thread when its caller gives up never runs.

The hot reads of PostgreSQL (``db/hot.py``) do not come here: they are asynchronous I/O on the
loop itself (``db/pg_async.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from strongroom.db import deadline
from strongroom.errors import ServiceUnavailableError

T = TypeVar("T")
P = ParamSpec("P")

# Threads per process for database work on PostgreSQL: each holds at most one pooled
# connection (the engine's pool has 8 plus 8 overflow), and admin work is rare; reads do not
# come here.
THREADS = 8


class DatabaseWork:
    """Runs synchronous database work inline or on threads with a deadline (module docstring)."""

    def __init__(self, *, in_threads: bool, timeout: float, threads: int = THREADS) -> None:
        self.timeout = timeout
        self._executor = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db-work")
            if in_threads
            else None
        )

    @property
    def in_threads(self) -> bool:
        return self._executor is not None

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(*args, **kwargs)``: inline (SQLite), or on a thread within the timeout
        (PostgreSQL; ServiceUnavailableError when it runs out). Exceptions propagate."""
        if self._executor is None:
            return work(*args, **kwargs)
        due = time.monotonic() + self.timeout
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, _call_within, due, work, args, kwargs
        )
        try:
            # On timeout wait_for cancels the future: work still queued never starts; work
            # under way goes on, under its deadline.
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise ServiceUnavailableError(
                "the database did not answer in time",
                reason=f"database work took longer than DB_TIMEOUT_SECONDS ({self.timeout:g} s)",
            ) from None

    async def run_async(
        self, work: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``await work(*args, **kwargs)``, for a coroutine that makes synchronous database
        calls between its awaits: on the caller's loop (SQLite), or on a loop of its own in a
        thread (PostgreSQL), under the same timeout as :meth:`run`."""
        if self._executor is None:
            return await work(*args, **kwargs)
        return await self.run(_run_on_own_loop, work, args, kwargs)

    def close(self) -> None:
        """Stop the threads once their work is done; queued work is dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _call_within(
    due: float, work: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    with deadline.within(due):
        return work(*args, **kwargs)


def _run_on_own_loop(
    work: Callable[..., Coroutine[Any, Any, T]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    # asyncio.run copies this thread's context into its task: the deadline goes along.
    return asyncio.run(work(*args, **kwargs))
