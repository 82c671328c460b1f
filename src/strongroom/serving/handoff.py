"""The worker's side: start login processes and pass login connections to them.

Each worker owns its login processes and talks to each over a ``socketpair`` of type
``SOCK_SEQPACKET``: one message per connection, carrying when the worker accepted it (8 bytes,
:func:`pack_accepted_at`: a request head's time limit runs from there), the bytes already read
from it and, as ``SCM_RIGHTS`` ancillary data, the connection's socket. The worker then closes
its copy of the socket; the login process owns the connection from there on. The kernel
duplicates the descriptor when the message is sent, so nothing is lost in between.

Contract of :meth:`LoginHandoff.offer`: ``True`` means the connection now belongs to a login
process and the caller must drop it without touching the socket again; ``False`` means the
worker serves it as usual (not a login, no login process ready, or the login processes are
``MAX_BACKLOG`` connections behind). When a login process's socket is full (a burst), the
worker keeps a duplicate of the connection's descriptor in that process's backlog and sends it
as soon as the socket drains: logins wait, reads do not.

A login process that exits (crash, kill) is started again after a pause; until then its share
of logins is served by the worker. A worker that exits closes its end of the socket pairs, and
its login processes finish the connections they hold and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
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

READY = b"ready"  # what a login process sends once it serves connections
MAX_BACKLOG = 1024  # connections a worker holds for one login process whose socket is full
BACKLOG_RETRY_SECONDS = 0.05
# send_fds errors that mean the login process's end is gone (any other is passing).
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionRefusedError)
RESTART_DELAY_SECONDS = 1.0
# A login within this long of one handed over because the worker was busy belongs to a burst:
# it is handed over too, even when it finds the worker idle for a moment. Each login kept
# costs the worker's loop milliseconds of CPU, just when the burst's other connections reach
# it and reads wait. Only a busy worker's handoff opens the window: logins one after another
# (each finding the worker idle) are no burst, and stay on the fastest path.
BURST_WINDOW_SECONDS = 0.25
STOP_TIMEOUT_SECONDS = 10.0
# A message's prefix: the connection's accept time, as time.monotonic() (one clock for every
# process of the machine), so that the login process knows how long the head has taken.
_ACCEPTED_AT = struct.Struct("!d")
ACCEPTED_AT_BYTES = _ACCEPTED_AT.size


def pack_accepted_at(accepted_at: float) -> bytes:
    return _ACCEPTED_AT.pack(accepted_at)


def unpack_message(message: bytes) -> tuple[float, bytes]:
    """(accept time, first bytes) of a message from the worker; ValueError if too short."""
    if len(message) < ACCEPTED_AT_BYTES:
        raise ValueError("a handoff message starts with the connection's accept time")
    (accepted_at,) = _ACCEPTED_AT.unpack_from(message)
    return float(accepted_at), message[ACCEPTED_AT_BYTES:]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class LoginProcess:
    """One login process and the worker's end of its socket pair.

    ``scheduling`` and ``nice``: how it yields the CPU to its worker (login_process.py,
    ``lower_priority``).
    """

    def __init__(self, index: int, nice: int, scheduling: str = "idle") -> None:
        self.index = index
        self.nice = nice
        self.scheduling = scheduling
        self.ready = False
        self.channel: socket.socket | None = None
        self.process: subprocess.Popen[bytes] | None = None
        # Connections waiting for room on the socket: a duplicate descriptor, the accept time
        # (packed) and the first bytes.
        self.backlog: deque[tuple[int, bytes, bytes]] = deque()

    def start(self) -> socket.socket:
        """Start the process; return the worker's end of its socket pair."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Our own interpreter and module, arguments we made: no outside input.
            self.process = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "strongroom.serving.login_process",
                    "--channel-fd",
                    str(theirs.fileno()),
                    "--nice",
                    str(self.nice),
                    "--scheduling",
                    self.scheduling,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # It stops with its worker, through the socket pair, not through signals.
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.channel = ours
        self.ready = False
        return ours

    def close_channel(self) -> None:
        self.ready = False
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        while self.backlog:  # never reached this process: their clients see the connection close
            os.close(self.backlog.popleft()[0])


class LoginHandoff:
    """The login processes of one worker; create it on the worker's running event loop."""

    def __init__(
        self, count: int, nice: int, *, keep_when_idle: bool = False, scheduling: str = "idle"
    ) -> None:
        """``keep_when_idle``: a login that reaches a worker serving no other request stays
        there (the worker runs it on its own loop, the fastest path). ``scheduling`` and
        ``nice``: how the login processes yield the CPU (STRONGROOM_LOGIN_PROCESS_SCHEDULING)."""
        if count < 1:
            raise ValueError("a login handoff needs at least one login process")
        self._keep_when_idle = keep_when_idle
        self._loop = asyncio.get_running_loop()
        self._processes = [LoginProcess(index, nice, scheduling) for index in range(count)]
        self._next = 0
        self._closing = False
        self._last_busy_handoff = float("-inf")  # loop time of the last one passed on when busy

    @property
    def processes(self) -> Sequence[LoginProcess]:
        return self._processes

    def start(self) -> LoginHandoff:
        for process in self._processes:
            self._start(process)
        return self

    def _start(self, process: LoginProcess) -> None:
        if self._closing:
            return
        try:
            channel = process.start()
        except OSError as exc:
            log.error("login_process_start_failed", index=process.index, error=str(exc))
            self._loop.call_later(RESTART_DELAY_SECONDS, self._start, process)
            return
        self._loop.add_reader(channel.fileno(), self._on_channel, process)

    def _on_channel(self, process: LoginProcess) -> None:
        """The login process said it is ready, or its end closed (it exited)."""
        channel = process.channel
        if channel is None:
            return
        try:
            message = channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message == READY:
            process.ready = True
            return
        if message:
            return  # nothing else is ever sent; ignore rather than trust it
        self._loop.remove_reader(channel.fileno())
        self._loop.remove_writer(channel.fileno())
        process.close_channel()
        if not self._closing:
            self._loop.call_later(RESTART_DELAY_SECONDS, self._restart, process)

    def _restart(self, process: LoginProcess) -> None:
        code = None
        if process.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.process.wait(timeout=0.1)  # reap the exited process
        log.warning("login_process_exited", index=process.index, exit_code=code)
        self._start(process)

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
                    process.ready = False  # it is going away; _on_channel will restart it
                    continue
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

    def _send_backlog(self, process: LoginProcess) -> None:
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
                break  # the process is going away; _on_channel drops the backlog
            except OSError:
                # Passing: try again shortly rather than spin on a writable socket.
                self._loop.remove_writer(channel.fileno())
                self._loop.call_later(BACKLOG_RETRY_SECONDS, self._arm_backlog, process)
                return
            process.backlog.popleft()
            os.close(descriptor)
        self._loop.remove_writer(channel.fileno())

    def _arm_backlog(self, process: LoginProcess) -> None:
        if process.channel is not None and process.backlog:
            self._loop.add_writer(process.channel.fileno(), self._send_backlog, process)

    def close(self) -> None:
        """Close the socket pairs (login processes drain and exit) and wait for them."""
        self._closing = True
        for process in self._processes:
            if process.channel is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(process.channel.fileno())
                    self._loop.remove_writer(process.channel.fileno())
            process.close_channel()
        for process in self._processes:
            if process.process is None:
                continue
            try:
                process.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("login_process_killed", index=process.index)
                process.process.kill()
                process.process.wait()
