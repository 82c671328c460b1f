"""A login process: serves the connections the workers pass over its socket pair.

The supervisor forks it (``serving/supervisor.py``, :func:`serve_login_process`) from its
preloaded interpreter. It builds the whole app from the same settings as the workers (so every
check and the audit trail are the same; a request that is not a login is served correctly too),
and yields the CPU to the workers (``--scheduling idle``, or ``nice``: :func:`lower_priority`):
when the machine is busy, reads in the workers come first and logins take what is left.
Logins run on this process's own event loop (nothing here needs protecting from them).

Each connection carries ``Connection: close`` on its response: the client's next request
(usually a secret read) opens a new connection, which a worker serves.

It exits when every workers' end of its socket pair has closed (the workers have stopped and
the supervisor closed its copies), after finishing the connections it holds (at most
``DRAIN_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from uvicorn.server import ServerState

from strongroom.auth.login_loop import new_event_loop
from strongroom.config import Settings
from strongroom.serving.descriptors import presize_descriptor_table
from strongroom.serving.handoff import ACCEPTED_AT_BYTES, LoginPool, unpack_message
from strongroom.serving.http_protocol import ServerHttpProtocol
from strongroom.serving.placement import Placement
from strongroom.serving.routing import MAX_FIRST_CHUNK

log = structlog.get_logger("strongroom.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_TIMEOUT_SECONDS = 10.0


class CloseAfterResponse:
    """ASGI wrapper: every response says ``Connection: close`` (uvicorn then closes)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, send_closing)


class PassedConnectionProtocol(ServerHttpProtocol):
    """The server's HTTP protocol (Vault's ``LIST``, the head limits: ``http_protocol.py``), fed
    first with the bytes the worker had already read; the head's time runs from the worker's
    accept (``head_started``)."""

    def __init__(self, first_chunk: bytes, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_chunk = first_chunk

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        first, self._first_chunk = self._first_chunk, b""
        if first:
            self.data_received(first)  # before the loop reads anything more from the socket


class LoginProcessServer:
    """Receives connections on ``channel`` and serves them with ``app`` until it closes."""

    def __init__(self, app: App, channel: socket.socket, on_ready: Callable[[], None]) -> None:
        self._channel = channel
        self._on_ready = on_ready
        self._config = uvicorn.Config(
            CloseAfterResponse(app),
            http="httptools",
            lifespan="off",  # run() enters the app's lifespan itself
            access_log=False,
            log_level="warning",
            # Our own logging (kit/logging.py): uvicorn's default configuration would give its
            # loggers plain-text handlers of their own.
            log_config=None,
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is judged by the app (trusted proxies)
        )
        self._config.load()
        self._state = ServerState()
        self._app_state: dict[str, Any] = {}
        self._closed = asyncio.Event()

    async def run(self, lifespan_state: Mapping[str, Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._app_state = dict(lifespan_state or {})
        self._channel.setblocking(False)
        loop.add_reader(self._channel.fileno(), self._on_channel)
        dates = loop.create_task(self._keep_date_header())
        self._on_ready()
        await self._closed.wait()
        loop.remove_reader(self._channel.fileno())
        await self._drain()
        dates.cancel()

    def _on_channel(self) -> None:
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(
                    self._channel, ACCEPTED_AT_BYTES + MAX_FIRST_CHUNK, 1
                )
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:
                self._closed.set()  # the workers and the supervisor are done with it
                return
            for fd in fds[1:]:  # never more than one is sent; never leak one
                os.close(fd)
            if not fds:
                continue
            try:
                accepted_at, chunk = unpack_message(message)
            except ValueError:  # not from our workers' code: nothing to serve it with
                os.close(fds[0])
                continue
            self._serve(socket.socket(fileno=fds[0]), chunk, accepted_at)

    def _serve(self, connection: socket.socket, first_chunk: bytes, accepted_at: float) -> None:
        connection.setblocking(False)

        def protocol() -> asyncio.Protocol:
            return PassedConnectionProtocol(
                first_chunk,
                config=self._config,
                server_state=self._state,
                app_state=self._app_state,
                head_started=accepted_at,
            )

        task = asyncio.get_running_loop().create_task(self._accept(connection, protocol))
        self._state.tasks.add(task)
        task.add_done_callback(self._state.tasks.discard)

    async def _accept(
        self, connection: socket.socket, protocol: Callable[[], asyncio.Protocol]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(protocol, connection)
        except OSError:
            connection.close()  # the client went away while the connection was passed

    async def _keep_date_header(self) -> None:
        while True:
            now = time.time()
            self._state.default_headers = [
                (b"date", _http_date(now)),
                *self._config.encoded_headers,
            ]
            await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        for connection in list(self._state.connections):
            connection.shutdown()
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        # Polled: uvicorn's connection set has no "became empty" signal to wait on.
        while (self._state.connections or self._state.tasks) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _http_date(timestamp: float) -> bytes:
    from email.utils import formatdate

    return formatdate(timestamp, usegmt=True).encode("ascii")


async def _serve_app(
    settings: Settings, channel: socket.socket, on_ready: Callable[[], None]
) -> None:
    from strongroom.api.app import create_app

    app = create_app(settings, placement=Placement.login_process(settings))
    async with app.router.lifespan_context(app) as state:
        # As in the workers: start-up leaves long-lived objects, and the collections that
        # walked them took a tenth of this process's CPU during a burst of logins
        # (bench/login.py --profile). Frozen, no later collection walks them.
        gc.collect()
        gc.freeze()
        await LoginProcessServer(app, channel, on_ready).run(state)


AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int, *, idle: bool) -> str:
    """Make this process yield the CPU to its worker; return how (``"idle"`` or ``"nice"``).

    ``idle``: Linux's SCHED_IDLE policy, staying in the worker's session. Between the tasks of
    one CPU group a SCHED_IDLE task is preempted at once by a normal one that wakes up, so a
    read reaching the worker never waits for a login to finish its time slice. A nice value
    only lowers a task's share: measured in ``bench/login.py``, workers woken during a burst
    waited 4 to 8 ms for a core that two nice-10 login processes held.

    Otherwise (``idle`` false, or SCHED_IDLE refused or missing): ``nice`` steps lower, in a
    session of its own. Where Linux groups each session's tasks for fairness ("autogroup", on
    by default in most distributions), CPU time is first shared between groups, whatever the
    tasks' nice values: in its worker's group a login process's work counted against the
    worker. Its own group gets the same lower priority. Without autogroup (or in a cgroup,
    where it does not apply) that write does nothing, or fails and is skipped.
    """
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):  # not Linux, or not allowed here
            pass
        else:
            return "idle"
    os.setsid()
    if nice > 0:
        os.nice(nice)
        # No autogroup in this kernel, or not allowed: the nice value alone applies.
        with contextlib.suppress(OSError):
            AUTOGROUP.write_text(str(nice))
    return "nice"


def serve_login_process(
    settings: Settings, pool: LoginPool, index: int, *, nice: int, scheduling: str
) -> None:
    """Run login process ``index`` of ``pool`` until its socket pair closes (in a forked child
    of the supervisor, which calls nothing else)."""
    # First, so that even building the app yields to the workers' reads.
    chosen = lower_priority(nice, idle=scheduling == "idle")
    # It receives a burst's connections: a table grown now, single-threaded, never stalls.
    presize_descriptor_table()
    if chosen != scheduling:
        log.warning("login_process_sched_idle_refused", fallback=f"nice {nice}")
    # Ctrl-C in a terminal reaches the whole process group, and systemd's stop sends SIGTERM
    # to every process of the service at once: the workers stop first, and the socket pair
    # closing tells this process to finish the logins it holds and exit (the supervisor
    # kills it if it does not). Dying on the signal would cut those logins off mid-answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = pool.keep_login_end(index)

    def ready() -> None:
        pool.set_ready(index, True)

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(_serve_app(settings, channel, ready))
    finally:
        pool.set_ready(index, False)
