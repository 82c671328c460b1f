"""PostgreSQL's change feed: the cache counters without a round trip per request.

Every change to what a worker caches bumps a counter (``db/counters.py``: ``generation`` for
tokens, roles, rules, associations and auth methods; ``secrets`` for items and versions) and,
in the same transaction, sends ``NOTIFY`` on the counter's channel with the new value. A worker
keeps callers, rule sets and item-version rows for one value of their counter. Rather than read
the counters on every request, each worker keeps one connection that listens for those
notifications, and that proves every few hundred milliseconds that it missed none:

- a **heartbeat** every :data:`HEARTBEAT_SECONDS` reads the counters themselves on that
  connection. Its answer reflects every change committed before it was asked, notified or not,
  so the feed is certain of each counter as of the moment the heartbeat was *sent*;
- between heartbeats, a notification raises the value at once (PostgreSQL delivers them in
  commit order as they happen), so a change usually reaches every worker within
  milliseconds;
- a notification that has reached the worker but not been read yet (the listening socket has
  bytes waiting: one ``poll`` per request) makes that request read the counter itself (or, for
  ``secrets``, the row): a change committed before a request arrived is never missed for want
  of a loop pass;
- a value is **trusted** only while the last answered heartbeat was sent less than
  :data:`TRUST_SECONDS` ago. Otherwise (the listener is down, reconnecting, slow, or its loop
  is too busy to read) :meth:`ChangeFeed.value` answers None and the caller reads the
  database itself, per request, as without the feed.

So a change reaches every request that starts at least :data:`TRUST_SECONDS` after it commits
(SPEC section 11: "at the latest within one second"), whatever happens to notifications, and no
request trusts a value nobody could vouch for ("never later while a replica cannot be sure").
``CHANGE_FEED=false`` turns the feed off (one counter read per request, no cached rows).

:class:`TrustWindow` is the pure core (tested on its own); :class:`ChangeFeed` the I/O around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import threading
import time
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy.engine import URL

from strongroom.db.counters import CHANNELS, GENERATION
from strongroom.db.engine import postgres_options
from strongroom.db.pg_async import bounded, conninfo, sever

HEARTBEAT_SECONDS = 0.25
TRUST_SECONDS = 0.75
# After a failure the listener reconnects after this, doubling up to RECONNECT_MAX_SECONDS;
# requests meanwhile read the counter themselves.
RECONNECT_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 5.0
# Built from constants only: every counter the feed watches, in one statement.
_COUNTERS_SQL = "SELECT name, value FROM counters WHERE name IN ({})".format(  # noqa: S608
    ", ".join(f"'{name}'" for name in CHANNELS)
)
# How the listening connections show in pg_stat_activity.
APPLICATION_NAME = "strongroom change feed"

log = structlog.get_logger("strongroom.db")


class TrustWindow:
    """What a worker knows of one counter, and for how long it may rely on it.

    Times are ``time.monotonic()`` values passed in by the caller. The loop's listener and a
    thread that committed a change both update it: updates hold a lock, reads need none.
    """

    def __init__(self, trust_seconds: float = TRUST_SECONDS) -> None:
        self._trust_seconds = trust_seconds
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._proven_at = -math.inf
        self._heard: tuple[int, float] | None = None  # the last value heard, and when

    def proven(self, generation: int, asked_at: float) -> None:
        """A heartbeat asked at ``asked_at`` read ``generation``: every change committed
        before then is counted in it. It replaces what was known (the counter only goes back
        after a restore, and then the database is right), except a higher value heard since
        the heartbeat was asked: a change committed after the heartbeat's snapshot."""
        with self._lock:
            heard = self._heard
            if heard is not None and heard[1] >= asked_at:
                generation = max(generation, heard[0])
            self._generation = generation
            self._proven_at = max(self._proven_at, asked_at)

    def heard(self, payload: str | int, now: float) -> None:
        """A notification (or this process's own commit): the counter's new value. It only
        ever moves the value up. A payload that cannot be read leaves nothing trusted until
        the next heartbeat."""
        try:
            generation = int(payload)
        except ValueError:
            self.lost()
            return
        with self._lock:
            self._heard = (generation, now)
            if self._generation is not None:
                self._generation = max(self._generation, generation)

    def lost(self) -> None:
        """The listener failed: nothing is trusted until a heartbeat proves it again."""
        with self._lock:
            self._generation = None
            self._proven_at = -math.inf

    def trusted(self, now: float) -> int | None:
        """The counter, if a heartbeat sent less than the trust period before ``now`` vouches
        for it; else None (read it from the database)."""
        if self._generation is None or now - self._proven_at >= self._trust_seconds:
            return None
        return self._generation


class ChangeFeed:
    """One listening connection per worker, with its heartbeat (module docstring): a
    :class:`TrustWindow` per counter of ``db/counters.py``."""

    def __init__(
        self,
        url: URL,
        *,
        timeout: float,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        trust_seconds: float = TRUST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout`` (``DB_TIMEOUT_SECONDS``) bounds connecting, LISTEN and each heartbeat:
        past it the connection is dropped and made again."""
        self._conninfo = conninfo(url)
        self._options = postgres_options(timeout)
        self._timeout = timeout
        self._heartbeat = heartbeat_seconds
        self._clock = clock
        self.windows = {name: TrustWindow(trust_seconds) for name in CHANNELS}
        self._by_channel = {channel: self.windows[name] for name, channel in CHANNELS.items()}
        self._waiting: select.poll | None = None  # readiness of the listening socket
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def window(self) -> TrustWindow:
        """The ``generation`` counter's window."""
        return self.windows[GENERATION]

    def value(self, name: str) -> int | None:
        """Counter ``name``, while the feed can vouch for it; None: read the database."""
        value = self.windows[name].trusted(self._clock())
        waiting = self._waiting
        if value is not None and waiting is not None and waiting.poll(0):
            return None  # a notification (or the heartbeat's answer) not read yet
        return value

    def generation(self) -> int | None:
        """The ``generation`` counter, while the feed can vouch for it; else None."""
        return self.value(GENERATION)

    def committed(self, name: str, value: int) -> None:
        """This process committed a change that moved counter ``name`` to ``value``: known
        here at once, without waiting for its notification (any thread may call this)."""
        window = self.windows.get(name)
        if window is not None:
            window.heard(value, self._clock())

    def _lost(self) -> None:
        for window in self.windows.values():
            window.lost()

    def _trusted(self) -> bool:
        now = self._clock()
        return all(window.trusted(now) is not None for window in self.windows.values())

    def start(self) -> None:
        """Start listening on the running loop (again on another loop: tests start one per
        client); idempotent."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        self._lost()
        self._loop = loop
        self._task = loop.create_task(self._run(), name="strongroom-change-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        self._lost()
        if task is not None and self._loop is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = RECONNECT_SECONDS
        while True:
            connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
            try:
                opened: psycopg.AsyncConnection[tuple[object, ...]] = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(
                        self._conninfo,
                        autocommit=True,
                        application_name=APPLICATION_NAME,
                        **self._options,
                    ),
                    self._timeout,
                )
                connection = opened
                waiting = select.poll()
                waiting.register(opened.pgconn.socket, select.POLLIN)
                self._waiting = waiting
                await self._listen(opened)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: fall back, reconnect after a pause
                if self._trusted():
                    delay = RECONNECT_SECONDS  # it worked until now: try again soon
                self._lost()
                log.warning("change_feed_lost", error=repr(exc), retry_seconds=delay)
            finally:
                self._waiting = None
                if connection is not None:
                    sever(connection)  # nothing waits on it any more: never blocks
                    with contextlib.suppress(Exception):
                        await connection.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """LISTEN, then heartbeat and hear notifications until the connection fails."""
        await bounded(connection, lambda: _listen_all(connection), self._clock() + self._timeout)
        while True:
            asked_at = self._clock()
            values = await bounded(
                connection, lambda: _read_counters(connection), asked_at + self._timeout
            )
            for name, window in self.windows.items():
                window.proven(values[name], asked_at)
            # Notifications that arrived during the heartbeat come first (psycopg keeps them).
            async for notification in connection.notifies(timeout=self._heartbeat):
                heard = self._by_channel.get(notification.channel)
                if heard is not None:
                    heard.heard(notification.payload, self._clock())


async def _listen_all(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    for channel in CHANNELS.values():  # constants of db/counters.py, never input
        await connection.execute(f"LISTEN {channel}")


async def _read_counters(
    connection: psycopg.AsyncConnection[tuple[object, ...]],
) -> dict[str, int]:
    cursor = await connection.execute(_COUNTERS_SQL)
    values = {str(name): int(str(value)) for name, value in await cursor.fetchall()}
    missing = CHANNELS.keys() - values.keys()
    if missing:
        raise LookupError(f"counters missing: {sorted(missing)}")
    return values
