"""New connections spread evenly over a server's workers.

Every worker accepts on the one listening socket the supervisor opened. Left to the kernel and
the event loop, the worker that wakes first takes every connection that is waiting (uvloop
accepts until none is left): sixteen kept connections opened together landed 11 and 5 on two
workers, and the worker with eleven ran out of CPU while the other idled, a third of the
server's reads lost for as long as the connections lived. A load balancer's or a client pool's
kept connections are exactly that case.

:class:`ConnectionShares` holds one count per worker in memory the supervisor shares with its
workers (an anonymous shared map, made before they are forked). A worker's
:class:`BalancedAcceptor` watches the listening socket on its event loop:

- it accepts while its worker holds no more connections than the least loaded other worker;
- otherwise it stops watching the socket for :data:`STEP_ASIDE_SECONDS` and leaves the
  connection to the others; what is still waiting when it looks again is accepted whatever
  the counts (all of it, up to :data:`CATCH_UP_MAX`), so that a worker that is busy, stuck or
  dead never keeps a client waiting longer than that, nor slows a burst of new connections;
- it publishes its worker's count whenever it changes: on every accept, and whenever a
  connection opens or closes (:class:`WatchedConnections`, uvicorn's set of them).

The counts only steer: a stale or wrong one costs balance, never a connection.

``BALANCED_ACCEPT=false``: uvicorn's own accepting (the event loop's), as with one worker.
"""

from __future__ import annotations

import asyncio
import mmap
import socket
import ssl
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("strongroom.serving")

# How long a worker that holds more than its share leaves new connections to the others.
STEP_ASIDE_SECONDS = 0.005
# At most this many connections accepted at once when the others have left them waiting.
CATCH_UP_MAX = 64
# After a failed accept (out of descriptors, most likely): how long before the next try.
ACCEPT_ERROR_PAUSE_SECONDS = 0.1
_COUNT_MAX = 2**32 - 1


class ConnectionShares:
    """Each worker's count of open connections, in memory shared by the supervisor's children
    (module docstring). Made once, before the workers are forked; each worker writes its own
    count only."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a server has at least one worker")
        self.workers = workers
        # Anonymous and shared (mmap's default on Linux): a forked child sees its parent's.
        self._map = mmap.mmap(-1, 4 * workers)
        self._counts = memoryview(self._map).cast("I")

    def publish(self, index: int, count: int) -> None:
        self._counts[index] = min(max(count, 0), _COUNT_MAX)

    def least_other(self, index: int) -> int:
        """The fewest connections any other worker holds (this worker's own count when there
        is no other)."""
        counts = self._counts
        return min((counts[i] for i in range(self.workers) if i != index), default=counts[index])


class WatchedConnections(set[Any]):
    """A worker's open connections (uvicorn's ``server_state.connections``, which its protocols
    add themselves to and discard themselves from), calling ``on_change`` after each change."""

    on_change: Callable[[], None] | None = None

    def add(self, connection: Any) -> None:
        super().add(connection)
        if self.on_change is not None:
            self.on_change()

    def discard(self, connection: Any) -> None:
        super().discard(connection)
        if self.on_change is not None:
            self.on_change()


class BalancedAcceptor:
    """Accepts a worker's share of the connections on ``listener`` (module docstring) and
    serves each with ``protocol_factory``, as the event loop's own server would.

    ``connections``: the worker's open connections (uvicorn's ``server_state.connections``);
    the acceptor publishes their count whenever it changes.
    ``tls``: the context, and its handshake and shutdown bounds, for HTTPS.
    """

    def __init__(
        self,
        listener: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        shares: ConnectionShares,
        index: int,
        connections: WatchedConnections,
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout: float | None = None,
        tls_shutdown_timeout: float | None = None,
    ) -> None:
        self._listener, self._factory = listener, protocol_factory
        self._shares, self._index, self._connections = shares, index, connections
        self._tls, self._tls_timeouts = tls, (tls_handshake_timeout, tls_shutdown_timeout)
        self._loop = asyncio.get_running_loop()
        self._watching = False
        self._timer: asyncio.TimerHandle | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        self._listener.setblocking(False)
        self._connections.on_change = self._publish
        self._publish()
        self._watch()

    # uvicorn's side: what it calls on the servers it made (shutdown).

    def close(self) -> None:
        """Stop accepting (the listening socket itself is uvicorn's to close)."""
        self._closed = True
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._connections.on_change = None
        self._shares.publish(self._index, 0)

    async def wait_closed(self) -> None:
        for task in list(self._starting):
            task.cancel()
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    # -- accepting ---------------------------------------------------------------------------

    def _held(self) -> int:
        """This worker's connections: open ones, and those accepted but not yet open (their
        protocol is not made yet, or their TLS handshake is under way)."""
        return len(self._connections) + len(self._starting)

    def _on_readable(self) -> None:
        mine = self._held()
        self._shares.publish(self._index, mine)
        if mine > self._shares.least_other(self._index):
            # More than our share: leave this connection to a less loaded worker for a moment.
            self._pause(STEP_ASIDE_SECONDS)
            return
        self._accept(1)

    def _accept(self, most: int) -> None:
        """Accept up to ``most`` waiting connections; stop at the first refusal."""
        for _ in range(most):
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it, or nothing is left
            except OSError as exc:
                # Out of descriptors (EMFILE), most likely: retrying at once would spin.
                log.warning(
                    "accept_failed", error=str(exc), retry_seconds=ACCEPT_ERROR_PAUSE_SECONDS
                )
                self._pause(ACCEPT_ERROR_PAUSE_SECONDS)
                return
            task = self._loop.create_task(self._serve(connection))
            self._starting.add(task)
            task.add_done_callback(self._started)
            self._publish()

    def _started(self, task: asyncio.Task[None]) -> None:
        self._starting.discard(task)
        self._publish()

    async def _serve(self, connection: socket.socket) -> None:
        handshake, shutdown = self._tls_timeouts  # None without TLS, as the loop requires
        try:
            connection.setblocking(False)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._loop.connect_accepted_socket(
                self._factory,
                connection,
                ssl=self._tls,
                ssl_handshake_timeout=handshake,
                ssl_shutdown_timeout=shutdown,
            )
        except (OSError, EOFError) as exc:  # TLS errors and timeouts are OSErrors too
            # A client that left, or failed its TLS handshake, before it was served.
            connection.close()
            log.debug("connection_not_served", error=repr(exc))

    def _pause(self, seconds: float) -> None:
        self._unwatch()
        if self._timer is None:
            self._timer = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._timer = None
        if self._closed:
            return
        # What is still waiting after we stepped aside is ours: the others are not accepting
        # (busy, stuck or gone). All of it, not one connection per step aside.
        self._accept(CATCH_UP_MAX)
        if self._timer is None:  # unless an accept failed and paused again
            self._watch()

    def _watch(self) -> None:
        if not self._watching and not self._closed:
            self._loop.add_reader(self._listener.fileno(), self._on_readable)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._listener.fileno())
            self._watching = False

    def _publish(self) -> None:
        self._shares.publish(self._index, self._held())
