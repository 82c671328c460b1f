"""Asynchronous PostgreSQL statements with a deadline that a silent network cannot stretch.

The hot reads of PostgreSQL (``db/hot.py``) and the change feed (``db/change_feed.py``) run on
psycopg's asynchronous connections: while a statement waits for the database, the event loop
serves other requests. Its contract:

- Every statement has a deadline (``DB_TIMEOUT_SECONDS`` for the request's work). When it
  passes, or the caller is cancelled, the connection's socket is shut down: the statement
  fails at once with a connection error, and the connection is discarded. Not psycopg's own
  cancellation: on a cancelled await it sends a cancel request through a new connection, over
  the same network that stopped answering, and waits for the statement again.
- Connections come from a ``psycopg_pool.AsyncConnectionPool`` of autocommit connections made
  with :func:`~strongroom.db.engine.postgres_options`; the wait for one is part of the deadline.
  A pool belongs to the event loop that opened it: a reader used from another loop (tests
  that start one per client) opens a new pool there.
- A failure is ServiceUnavailableError (503), never a driver error. A connection that broke
  (a server restart, failover: every idle connection of the pool broke at once) is discarded
  and the statement tried again on another, as long as the deadline allows and at most once
  per connection the pool may hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.engine import URL

from strongroom.db.engine import postgres_options
from strongroom.errors import ServiceUnavailableError

T = TypeVar("T")
log = structlog.get_logger("strongroom.db")

Connection = psycopg.AsyncConnection[Any]


class DeadlineExceededError(Exception):
    """A statement did not finish before its deadline; its connection was shut down."""


def conninfo(url: URL) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def sever(connection: Connection) -> None:
    """Shut the connection's socket down without waiting for anything: a statement in flight
    fails at once (end of stream), and the connection is broken for good."""
    # A duplicate of the descriptor: shutdown() acts on the socket itself, and the connection
    # keeps its own descriptor open until psycopg closes it. A closed connection: nothing to do.
    with (
        contextlib.suppress(Exception),
        socket.socket(fileno=os.dup(connection.pgconn.socket)) as raw,
    ):
        raw.shutdown(socket.SHUT_RDWR)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned statement's failure is expected


async def bounded(
    connection: Connection,
    statement: Callable[[], Awaitable[T]],
    due: float,
    *,
    abandoned: Callable[[], object] | None = None,
) -> T:
    """``await statement()`` on ``connection`` until ``due`` (``time.monotonic()``).

    DeadlineExceededError when it runs out: the connection is severed, and the statement has
    ended when this returns (the connection may be given back, to be discarded). A cancelled
    caller severs it too, and ``abandoned()`` runs once the statement has ended (a connection
    must not be closed or reused while a statement of it still waits on its socket). No
    cancel request ever goes to the database.
    """
    loop = asyncio.get_running_loop()
    task: asyncio.Task[T] = loop.create_task(statement())  # type: ignore[arg-type]
    expired = False

    def expire() -> None:
        nonlocal expired
        if not task.done():
            expired = True
            sever(connection)

    timer = loop.call_later(max(0.0, due - time.monotonic()), expire)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            raise
        sever(connection)

        def ended(finished: asyncio.Task[T]) -> None:
            _consume(finished)
            if abandoned is not None:
                abandoned()

        task.add_done_callback(ended)
        raise
    except Exception:
        if expired:
            raise DeadlineExceededError from None
        raise
    finally:
        timer.cancel()


class PooledReads:
    """Single-statement reads on a pool of autocommit async connections (module contract)."""

    def __init__(
        self,
        url: URL,
        *,
        timeout: float,
        purpose: str,
        min_size: int = 2,
        max_size: int = 8,
    ) -> None:
        """``purpose`` names the reads in logs and in the reason of a 503 (e.g. "hot read")."""
        self._conninfo = conninfo(url)
        self._kwargs: dict[str, Any] = {
            **postgres_options(timeout),
            "autocommit": True,
            # Prepared on first use: the server plans each hot statement once per connection.
            "prepare_threshold": 0,
        }
        self.timeout = timeout
        self._purpose = purpose
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> AsyncConnectionPool[Connection]:
        """The pool of the running loop, opened now if it is not yet (connections are made in
        the background: opening never waits for the database)."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._loop is loop:
            return pool
        # A pool of another loop (gone, or never to run again here) is left to be collected.
        pool = AsyncConnectionPool(
            self._conninfo,
            kwargs=self._kwargs,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            timeout=self.timeout,
            name=self._purpose,
            # A connection that cannot be made is given up after this; the next request that
            # finds the pool short asks for one again (a database back up is used at once,
            # not after a long back-off).
            reconnect_timeout=max(2 * self.timeout, 5.0),
        )
        self._pool, self._loop = pool, loop
        await pool.open(wait=False)
        return pool

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of one read statement (``%s`` placeholders), within the timeout."""
        due = time.monotonic() + self.timeout
        pool = await self._running_pool()
        attempts = self._max_size + 1
        for attempt in range(1, attempts + 1):
            connection = await self._check_out(pool, due)
            try:
                return await self._run_on(
                    pool,
                    connection,
                    partial(_fetch, sql=sql, params=params),
                    due,
                    given_back=(psycopg.OperationalError,),
                )
            except psycopg.OperationalError as exc:
                # A dropped connection (server restart, failover): again on another.
                if attempt == attempts or time.monotonic() >= due:
                    raise self._unavailable(repr(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``await work(connection)`` on one pooled connection, within the timeout, once.

        For writes: never tried again on another connection, since a statement whose answer
        was lost may have committed. Every failure is ServiceUnavailableError (``work``'s own
        included); a connection that broke is discarded by the pool."""
        due = time.monotonic() + self.timeout
        pool = await self._running_pool()
        connection = await self._check_out(pool, due)
        try:
            return await self._run_on(pool, connection, work, due, given_back=(Exception,))
        except ServiceUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable(repr(exc)) from exc

    async def _running_pool(self) -> AsyncConnectionPool[Connection]:
        """The running loop's pool; :meth:`open` only when it has none yet."""
        pool = self._pool if self._loop is asyncio.get_running_loop() else None
        return pool if pool is not None else await self.open()

    async def _check_out(self, pool: AsyncConnectionPool[Connection], due: float) -> Connection:
        """A connection of ``pool``; ServiceUnavailableError when none is free by ``due``."""
        try:
            return await pool.getconn(timeout=max(0.0, due - time.monotonic()))
        except PoolTimeout as exc:
            raise self._unavailable("no connection within DB_TIMEOUT_SECONDS") from exc

    async def _run_on(
        self,
        pool: AsyncConnectionPool[Connection],
        connection: Connection,
        work: Callable[[Connection], Awaitable[T]],
        due: float,
        *,
        given_back: tuple[type[Exception], ...],
    ) -> T:
        """``await work(connection)`` until ``due``, then give ``connection`` back to ``pool``
        however it ended.

        ServiceUnavailableError when ``work`` outlasts ``due`` (its connection severed). A
        failure of ``work`` that is one of ``given_back`` is raised as it is, its connection
        given back as it stands (the pool discards it if it broke); any other failure severs
        the connection first. A cancelled caller: given back by :func:`bounded` once the
        statement has ended.
        """
        try:
            result = await bounded(
                connection,
                partial(work, connection),
                due,
                abandoned=partial(_give_back_later, pool, connection),
            )
        except DeadlineExceededError:
            await pool.putconn(connection)  # severed: the pool discards it
            raise self._unavailable("no answer within DB_TIMEOUT_SECONDS") from None
        except asyncio.CancelledError:
            raise  # given back by bounded() once the statement has ended
        except given_back:
            await pool.putconn(connection)
            raise
        except BaseException:
            sever(connection)
            await pool.putconn(connection)
            raise
        await pool.putconn(connection)
        return result

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            "the database is unavailable", reason=f"{self._purpose} failed: {why}"
        )

    async def aclose(self) -> None:
        """Close the pool of the running loop (and forget any other)."""
        pool, loop = self._pool, self._loop
        self._pool = self._loop = None
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.close(timeout=1.0)


async def _fetch(connection: Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    cursor = await connection.execute(sql, params)
    return await cursor.fetchall()


def _give_back_later(pool: AsyncConnectionPool[Connection], connection: Connection) -> None:
    """Give back a severed connection (the pool discards it) from a callback."""
    task = asyncio.get_running_loop().create_task(pool.putconn(connection))
    task.add_done_callback(_consume)
