"""The server's main process: forks the workers and the login pool from one preloaded
interpreter, restarts what dies, and stops everything on SIGTERM.

Why not ``uvicorn.run(workers=N)``: it starts each worker as a fresh interpreter that imports
everything again, and each worker started login processes of its own, again fresh
interpreters: 75 MB for the main process and about 90 MB for each of the others (proportional
set size, idle). Forked from a parent that has imported the app's modules and frozen them
(``gc.freeze``: no collection writes to their pages, so they stay shared), a child costs only
what it changes (``bench/memory.py``). One login pool serves all workers
(``serving/handoff.py``).

Contract:

- :meth:`Supervisor.run` forks ``workers`` workers (``serving/worker.py``) on the listening
  socket and the pool's login processes (``serving/login_process.py``), and returns the exit
  code for the server: 0 after SIGTERM or SIGINT.
- A child that exits while the server runs is logged (``worker_exited`` /
  ``login_process_exited``, with its exit code or the signal that killed it; counted in
  ``strongroom_process_exits_total``) and started again (``worker_restarted`` /
  ``login_process_restarted``, with the new and the previous pid), after a delay that
  doubles with each exit soon after a start (``RESTART_DELAYS``, reset once a child has run
  ``STABLE_SECONDS``): a child that cannot start (a full disk, a database gone) does not
  become a crash loop.
- SIGTERM (or SIGINT): the listening socket is closed here and each worker gets SIGTERM: it
  stops accepting, closes its idle connections and finishes what is in flight (at most
  ``worker.GRACEFUL_SHUTDOWN_SECONDS``). Once the workers have exited the supervisor closes the
  pool's sockets: the login processes finish the logins they hold and exit. A child still
  running past its bound is killed. Nothing is left behind; the exit code is 0 (1 if a child
  had to be killed).
- Workers die with the supervisor (``PR_SET_PDEATHSIG``), and the login processes with them
  (their socket pairs close).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import selectors
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from strongroom.config import Settings
from strongroom.serving.balanced_accept import ConnectionShares
from strongroom.serving.handoff import LoginPool

log = structlog.get_logger("strongroom.serving")

# Counted in the supervisor's own file of PROMETHEUS_MULTIPROC_DIR: the workers' /metrics
# adds it up with theirs. ``how``: "exit" (it called exit) or "signal" (killed by one).
EXITS = Counter(
    "strongroom_process_exits_total",
    "Server processes that exited while the server ran, by kind and how",
    ["kind", "how"],
)

RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_SECONDS = 30.0
# After SIGTERM: a worker's graceful shutdown (10 s) and its lifespan's end; then the login
# processes' drain (login_process.DRAIN_TIMEOUT_SECONDS) and theirs.
WORKER_STOP_SECONDS = 14.0
LOGIN_STOP_SECONDS = 12.0
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One slot of the server: a worker or a login process, and its current process."""

    kind: str  # "worker" | "login_process"
    index: int
    run: Callable[[], None]
    pid: int | None = None
    started: float = 0.0
    quick_exits: int = 0  # exits in a row, each within STABLE_SECONDS of its start
    restart_at: float | None = None
    pids_seen: list[int] = field(default_factory=list)


def _title(text: str) -> None:
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.setproctitle(text)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the supervisor dies (Linux); it may be gone already."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def preload() -> None:
    """Import what every child runs, then freeze it: the children share those pages.

    Frozen objects are left out of every garbage collection, whose bookkeeping would otherwise
    write to them and copy their pages into each child (copy-on-write).
    """

    import strongroom.api.app
    import strongroom.serving.login_process
    import strongroom.serving.worker  # noqa: F401

    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
    gc.collect()
    gc.freeze()


def describe_exit(status: int) -> dict[str, object]:
    """``{"exit_code": n}`` or ``{"signal": "SIGBUS"}`` for a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return {"signal": name}
    return {"exit_code": os.waitstatus_to_exitcode(status)}


class Supervisor:
    """See the module docstring. Create and run it in the server's main thread, before any
    other thread or event loop exists (children are forked from this process)."""

    def __init__(
        self,
        settings: Settings,
        listener: socket.socket,
        workers: int,
        pool: LoginPool | None,
        *,
        title: str = "strongroom",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the workers serve HTTPS with this context (``serving/tls.py``)."""
        self._settings = settings
        self._tls = tls
        self._listener: socket.socket | None = listener
        self._pool = pool
        self._title = title
        self._pid = os.getpid()
        # Workers take even shares of new connections (serving/balanced_accept.py).
        self._shares = (
            ConnectionShares(workers) if workers > 1 and settings.balanced_accept else None
        )
        self._workers = [
            Child("worker", index, self._worker_main(listener, index)) for index in range(workers)
        ]
        self._logins = (
            [Child("login_process", i, self._login_main(pool, i)) for i in range(len(pool))]
            if pool is not None
            else []
        )
        self._stopping = False
        self._stop_deadline = 0.0
        self._pool_closed = False
        self._killed = False

    @property
    def children(self) -> list[Child]:
        return [*self._logins, *self._workers]

    # -- what each child runs ------------------------------------------------------------

    def _worker_main(self, listener: socket.socket, index: int) -> Callable[[], None]:
        def main() -> None:
            from strongroom.serving.worker import serve_worker

            balance = (self._shares, index) if self._shares is not None else None
            serve_worker(self._settings, listener, self._pool, self._tls, balance)

        return main

    def _login_main(self, pool: LoginPool, index: int) -> Callable[[], None]:
        def main() -> None:
            from strongroom.serving.login_process import serve_login_process

            if self._listener is not None:
                self._listener.close()  # it never accepts: only the workers hold the socket
            serve_login_process(
                self._settings,
                pool,
                index,
                nice=self._settings.login_process_nice,
                scheduling=self._settings.login_process_scheduling,
            )

        return main

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        _title(f"{self._title}: supervisor")
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake = (wake_read, wake_write)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
        old_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        selector.register(wake_read, selectors.EVENT_READ)
        self._selector = selector
        try:
            for child in self.children:  # login processes first: ready before the first login
                self._start(child)
            while True:
                selector.select(self._timeout())
                for number in self._drain_wakeups(wake_read):
                    if number in (signal.SIGTERM, signal.SIGINT):
                        self._stop(signal.Signals(number))
                self._reap()
                if self._stopping:
                    if self._advance_stop():
                        return 1 if self._killed else 0
                else:
                    self._restart_due()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            selector.close()
            os.close(wake_read)
            os.close(wake_write)

    @staticmethod
    def _drain_wakeups(fd: int) -> bytes:
        data = b""
        while True:
            try:
                chunk = os.read(fd, 512)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self._stopping:
            return max(0.0, min(self._stop_deadline - now, 0.5))
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(due) - now) if due else None

    # -- starting and restarting -----------------------------------------------------------

    def _start(self, child: Child) -> None:
        child.restart_at = None
        try:
            pid = os.fork()
        except OSError as exc:
            log.error(f"{child.kind}_start_failed", index=child.index, error=str(exc))
            self._schedule_restart(child)
            return
        if pid == 0:
            self._become_child(child)
        if child.pids_seen:
            log.info(
                f"{child.kind}_restarted",
                index=child.index,
                pid=pid,
                previous_pid=child.pids_seen[-1],
                restarts=len(child.pids_seen),
            )
        child.pid = pid
        child.started = time.monotonic()
        child.pids_seen.append(pid)

    def _become_child(self, child: Child) -> None:
        """In the forked child: never returns."""
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            self._selector.close()  # the supervisor's: not this child's to hold
            for number in self._wake:
                os.close(number)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent(self._pid)
            name = "worker" if child.kind == "worker" else "login process"
            _title(f"{self._title}: {name} {child.index}")
            child.run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            log.error(f"{child.kind}_failed", index=child.index, error=repr(exc))
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)  # never the supervisor's own clean-up (atexit, finally blocks)

    def _schedule_restart(self, child: Child) -> float:
        """Start ``child`` again later (the more quick exits in a row, the later); the delay."""
        delay = RESTART_DELAYS[min(child.quick_exits, len(RESTART_DELAYS) - 1)]
        child.restart_at = time.monotonic() + delay
        return delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.pid is None and child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                continue
            child.pid = None
            if child.kind == "login_process" and self._pool is not None:
                self._pool.set_ready(child.index, False)
            if self._stopping:
                continue
            lived = time.monotonic() - child.started
            child.quick_exits = child.quick_exits + 1 if lived < STABLE_SECONDS else 0
            delay = self._schedule_restart(child)
            EXITS.labels(child.kind, "signal" if os.WIFSIGNALED(status) else "exit").inc()
            log.warning(
                f"{child.kind}_exited",
                index=child.index,
                pid=pid,
                **describe_exit(status),
                ran_seconds=round(lived, 1),
                restart_in_seconds=delay,
            )

    # -- stopping ------------------------------------------------------------------------

    def _stop(self, sig: signal.Signals) -> None:
        if self._stopping:  # a second signal: passed on (uvicorn's second SIGINT forces)
            self._signal(self._workers, sig)
            return
        self._stopping = True
        log.info("server_stopping", signal=sig.name)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for child in self.children:
            child.restart_at = None
        self._stop_deadline = time.monotonic() + WORKER_STOP_SECONDS
        self._signal(self._workers, signal.SIGTERM)

    @staticmethod
    def _signal(children: list[Child], sig: signal.Signals) -> None:
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, sig)

    def _advance_stop(self) -> bool:
        """One step of stopping; True once every child has exited."""
        now = time.monotonic()
        if not self._pool_closed:
            if any(c.pid is not None for c in self._workers):
                if now < self._stop_deadline:
                    return False
                self._kill(self._workers)
                return False
            # The workers are gone: the login pool's sockets close, its processes finish.
            if self._pool is not None:
                self._pool.close_worker_ends()
            self._pool_closed = True
            self._stop_deadline = now + LOGIN_STOP_SECONDS
        if any(c.pid is not None for c in self._logins):
            if now >= self._stop_deadline:
                self._kill(self._logins)
            return False
        return True

    def _kill(self, children: list[Child]) -> None:
        for child in children:
            if child.pid is not None:
                log.warning(f"{child.kind}_killed", index=child.index, pid=child.pid)
                self._killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        self._stop_deadline = time.monotonic() + 5.0  # for the kill to be reaped
