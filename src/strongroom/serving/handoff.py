"""The login pool, and the worker's side of passing login connections to it.

A server has one pool of login processes, shared by all its workers (``serving/supervisor.py``
forks both). Each login process has a socket pair of type ``SOCK_SEQPACKET`` and a readiness
flag, made by the supervisor before it forks anything (:class:`LoginPool`): every worker holds
the workers' end of every pair, each login process the other end of its own, and the supervisor
both ends of all of them for as long as the server runs. A worker sends one message per
connection, carrying when the worker accepted it (8 bytes, :func:`pack_accepted_at`: a request
head's time limit runs from there), the bytes already read from it and, as ``SCM_RIGHTS``
ancillary data, the connection's socket. The worker then closes its copy of the socket; the
login process owns the connection from there on. The kernel duplicates the descriptor when the
message is sent, so nothing is lost in between.

Because the supervisor holds both ends, a socket pair outlives the login processes that come
and go on it: connections sent while one is being replaced wait in the socket for the next.
The readiness flag (shared memory, one byte per login process) says whether a login process is
serving its socket: its login process sets it once it serves, the supervisor clears it when it
reaps the process. A worker passes logins only to ready login processes.

Contract of :meth:`LoginHandoff.offer`: ``True`` means the connection now belongs to a login
process and the caller must drop it without touching the socket again; ``False`` means the
worker serves it as usual (not a login, no login process ready, or the login processes are
``MAX_BACKLOG`` connections behind). When a login process's socket is full (a burst), the
worker keeps a duplicate of the connection's descriptor in that process's backlog and sends it
as soon as the socket drains: logins wait, reads do not.

A login process stops when every workers' end of its socket pair is closed (the workers have
exited and the supervisor closed its copies): it finishes the connections it holds and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import structlog
from prometheus_client import Counter

from strongroom.serving.routing import starts_login_request

log = structlog.get_logger("strongroom.serving")

HANDOFFS = Counter(
    "strongroom_login_handoffs_total",
    "New login connections by where they were served",
    # login_process | login_process_queued (its socket was full) | worker_idle (kept: the
    # worker served nothing else) | worker_busy (every backlog full) | worker_not_ready (no
    # login process ready)
    ["outcome"],
)
# Bound once: a burst counts hundreds of handoffs, and a labels() look-up costs more than inc().
_COUNT = {
    outcome: HANDOFFS.labels(outcome)
    for outcome in (
        "login_process",
        "login_process_queued",
        "worker_idle",
        "worker_busy",
        "worker_not_ready",
    )
}

MAX_BACKLOG = 1024  # connections a worker holds for one login process whose socket is full
BACKLOG_RETRY_SECONDS = 0.05
# send_fds errors that mean the login process's end is gone (any other is passing).
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionRefusedError)
# A login within this long of one handed over because the worker was busy belongs to a burst:
# it is handed over too, even when it finds the worker idle for a moment. Each login kept
# costs the worker's loop milliseconds of CPU, just when the burst's other connections reach
# it and reads wait. Only a busy worker's handoff opens the window: logins one after another
# (each finding the worker idle) are no burst, and stay on the fastest path.
BURST_WINDOW_SECONDS = 0.25
# A message's prefix: the connection's accept time, as time.monotonic() (one clock for every
# process of the machine), so that the login process knows how long the head has taken, time
# spent waiting in a backlog or in the socket for a login process being replaced included.
_ACCEPTED_AT = struct.Struct("!d")
ACCEPTED_AT_BYTES = _ACCEPTED_AT.size


def pack_accepted_at(accepted_at: float) -> bytes:
    return _ACCEPTED_AT.pack(accepted_at)


def unpack_message(message: bytes) -> tuple[float, bytes]:
    """(accept time, first bytes) of a message from a worker; ValueError if too short."""
    if len(message) < ACCEPTED_AT_BYTES:
        raise ValueError("a handoff message starts with the connection's accept time")
    (accepted_at,) = _ACCEPTED_AT.unpack_from(message)
    return float(accepted_at), message[ACCEPTED_AT_BYTES:]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class LoginPool:
    """The login processes' socket pairs and readiness flags; see the module docstring.

    Made by the supervisor before it forks: the children inherit the sockets and the flags
    (an anonymous shared mapping). Each child then keeps what it needs: :meth:`keep_worker_ends`
    in a worker, :meth:`keep_login_end` in a login process.
    """

    def __init__(self, count: int) -> None:
        self._flags = mmap.mmap(-1, max(1, count))  # MAP_SHARED | MAP_ANONYMOUS
        self.worker_ends: list[socket.socket] = []
        self.login_ends: list[socket.socket] = []
        for _ in range(count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.worker_ends.append(ours)
            self.login_ends.append(theirs)

    def __len__(self) -> int:
        return len(self.worker_ends)

    def ready(self, index: int) -> bool:
        return self._flags[index] == 1

    def set_ready(self, index: int, ready: bool) -> None:
        self._flags[index] = 1 if ready else 0

    def keep_worker_ends(self) -> None:
        """In a worker: only the workers' ends stay open here."""
        for end in self.login_ends:
            end.close()

    def keep_login_end(self, index: int) -> socket.socket:
        """In login process ``index``: only its own end stays open here; returned."""
        for end in self.worker_ends:
            end.close()
        for number, end in enumerate(self.login_ends):
            if number != index:
                end.close()
        return self.login_ends[index]

    def close_worker_ends(self) -> None:
        """In the supervisor, once the workers have exited: the login processes finish."""
        for end in self.worker_ends:
            end.close()

    def close(self) -> None:
        self.close_worker_ends()
        for end in self.login_ends:
            end.close()


class LoginChannel:
    """A worker's view of one login process: its socket, its readiness, its backlog."""

    def __init__(self, pool: LoginPool, index: int) -> None:
        self.index = index
        self._pool = pool
        self.channel: socket.socket | None = pool.worker_ends[index]
        # Connections waiting for room on the socket: a duplicate descriptor, the accept time
        # (packed) and the first bytes.
        self.backlog: deque[tuple[int, bytes, bytes]] = deque()

    @property
    def ready(self) -> bool:
        return self.channel is not None and self._pool.ready(self.index)

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()  # this process's copy: the pool's other holders keep theirs
            self.channel = None
        while self.backlog:  # never reached the process: their clients see the connection close
            os.close(self.backlog.popleft()[0])


class LoginHandoff:
    """A worker's handoff to the server's login pool; create it on the worker's running loop."""

    def __init__(self, pool: LoginPool, *, keep_when_idle: bool = False) -> None:
        """``keep_when_idle``: a login that reaches a worker serving no other request stays
        there (the worker runs it on its own loop, the fastest path)."""
        if len(pool) < 1:
            raise ValueError("a login handoff needs at least one login process")
        self._keep_when_idle = keep_when_idle
        self._loop = asyncio.get_running_loop()
        self._processes = [LoginChannel(pool, index) for index in range(len(pool))]
        for process in self._processes:
            if process.channel is not None:
                process.channel.setblocking(False)
        self._next = 0
        self._last_busy_handoff = float("-inf")  # loop time of the last one passed on when busy

    @property
    def processes(self) -> Sequence[LoginChannel]:
        return self._processes

    def offer(
        self,
        connection: _HasFileno,
        first_chunk: bytes,
        *,
        worker_idle: bool = False,
        accepted_at: float | None = None,
    ) -> bool:
        """Pass a new connection whose first bytes are ``first_chunk`` to a login process.

        ``worker_idle``: the worker serves no request at the moment (kept if keep_when_idle,
        unless a busy worker passed a login on less than BURST_WINDOW_SECONDS ago).
        ``accepted_at``: ``time.monotonic()`` when the worker accepted it (None: now).
        Returns whether it was passed (see the module docstring for the contract).
        """
        if not starts_login_request(first_chunk):
            return False
        now = self._loop.time()
        if (
            worker_idle
            and self._keep_when_idle
            and now - self._last_busy_handoff > BURST_WINDOW_SECONDS
        ):
            _COUNT["worker_idle"].inc()
            return False
        stamp = pack_accepted_at(time.monotonic() if accepted_at is None else accepted_at)
        passed = self._pass(connection, stamp, first_chunk)
        if passed and not worker_idle:
            self._last_busy_handoff = now
        return passed

    def _pass(self, connection: _HasFileno, stamp: bytes, first_chunk: bytes) -> bool:
        for _ in range(len(self._processes)):
            process = self._processes[self._next]
            self._next = (self._next + 1) % len(self._processes)
            if not process.ready or process.channel is None:
                continue
            if not process.backlog:
                try:
                    socket.send_fds(process.channel, [stamp, first_chunk], [connection.fileno()])
                except BlockingIOError:
                    pass  # the socket is full: queue it below
                except _GONE:
                    continue  # not reached while the supervisor holds the other end
                except OSError:
                    # Passing (too many descriptors in flight, no buffer memory): this login
                    # is served here; the process stays in service.
                    break
                else:
                    _COUNT["login_process"].inc()
                    return True
            if len(process.backlog) >= MAX_BACKLOG:
                continue
            try:
                duplicate = os.dup(connection.fileno())
            except OSError:
                break  # no descriptor left to hold it with: served here
            process.backlog.append((duplicate, stamp, first_chunk))
            if len(process.backlog) == 1:
                self._arm_backlog(process)
            _COUNT["login_process_queued"].inc()
            return True
        ready = any(process.ready for process in self._processes)
        _COUNT["worker_busy" if ready else "worker_not_ready"].inc()
        return False

    def _send_backlog(self, process: LoginChannel) -> None:
        """The socket has room again: send queued connections, oldest first."""
        channel = process.channel
        if channel is None:
            return
        while process.backlog:
            descriptor, stamp, first_chunk = process.backlog[0]
            try:
                socket.send_fds(channel, [stamp, first_chunk], [descriptor])
            except BlockingIOError:
                return  # still full: the writer stays armed
            except _GONE:
                process.close_channel()  # not reached while the supervisor holds the other end
                return
            except OSError:
                # Passing: try again shortly rather than spin on a writable socket.
                self._loop.remove_writer(channel.fileno())
                self._loop.call_later(BACKLOG_RETRY_SECONDS, self._arm_backlog, process)
                return
            process.backlog.popleft()
            os.close(descriptor)
        self._loop.remove_writer(channel.fileno())

    def _arm_backlog(self, process: LoginChannel) -> None:
        if process.channel is not None and process.backlog:
            self._loop.add_writer(process.channel.fileno(), self._send_backlog, process)

    def close(self) -> None:
        """Stop passing connections; what waits in a backlog is closed (its clients may retry)."""
        for process in self._processes:
            if process.channel is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_writer(process.channel.fileno())
            process.close_channel()
