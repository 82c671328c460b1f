"""A server worker: uvicorn on the listening socket it inherited from the supervisor.

The supervisor forks it (``serving/supervisor.py``) with the app's modules already imported and
frozen; the worker builds its own app (database connections, threads and event loop belong to
one process) and serves until SIGTERM or SIGINT. uvicorn then stops accepting, closes idle
connections (a connection that has not sent its first bytes too: ``serving/protocol.py``),
finishes the requests in flight for at most ``GRACEFUL_SHUTDOWN_SECONDS``, runs the app's
lifespan shutdown and returns; the worker exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from strongroom.api.app import create_app
from strongroom.config import Settings
from strongroom.serving.balanced_accept import (
    BalancedAcceptor,
    ConnectionShares,
    WatchedConnections,
)
from strongroom.serving.descriptors import presize_descriptor_table
from strongroom.serving.handoff import LoginPool
from strongroom.serving.placement import Placement
from strongroom.serving.protocol import LoginRoutingProtocol

# SPEC section 11: what is in flight gets at most this long after SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 10
# Under TLS: a client gets as long to finish its handshake as to send its request head (SPEC
# section 5: 10 s), not the event loop's default of 60 s (slowloris on the handshake); and a
# closing connection waits this long at most for the client's close_notify.
TLS_HANDSHAKE_SECONDS = 10.0
TLS_SHUTDOWN_SECONDS = 5.0


class WorkerServer(uvicorn.Server):
    """uvicorn's server, except that it does not raise the signal that stopped it again once
    it has shut down: it would kill the worker (exit status -15), and the supervisor tells a
    worker that stopped as asked from one that died by its exit code; under TLS its
    handshakes and shutdowns are bounded (uvicorn passes no such bound to the loop); and with
    ``balance`` (the server's :class:`ConnectionShares` and this worker's index) it accepts its
    share of the connections only (``serving/balanced_accept.py``)."""

    def __init__(
        self, config: uvicorn.Config, *, balance: tuple[ConnectionShares, int] | None = None
    ) -> None:
        super().__init__(config)
        self._balance = balance
        self._connections = WatchedConnections()
        if balance is not None:
            self.server_state.connections = self._connections

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # For the one create_server call uvicorn makes here: ours.
        if self._balance is not None:
            loop.create_server = functools.partial(self._balanced_server, *self._balance)  # type: ignore[method-assign, assignment]
        elif self.config.ssl is not None:
            # The bounds uvicorn does not pass.
            loop.create_server = functools.partial(  # type: ignore[method-assign]
                loop.create_server,
                ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS,
                ssl_shutdown_timeout=TLS_SHUTDOWN_SECONDS,
            )
        else:
            await super().startup(sockets)
            return
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server

    async def _balanced_server(
        self,
        shares: ConnectionShares,
        index: int,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        sock: socket.socket,
        ssl: ssl.SSLContext | None = None,
        **_: Any,
    ) -> BalancedAcceptor:
        """What uvicorn's start-up gets instead of the loop's server (it calls ``close`` and
        ``wait_closed`` on it when it stops)."""
        acceptor = BalancedAcceptor(
            sock,
            protocol_factory,
            shares=shares,
            index=index,
            connections=self._connections,
            tls=ssl,
            tls_handshake_timeout=TLS_HANDSHAKE_SECONDS if ssl is not None else None,
            tls_shutdown_timeout=TLS_SHUTDOWN_SECONDS if ssl is not None else None,
        )
        acceptor.start()
        return acceptor

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def serve_worker(
    settings: Settings,
    listener: socket.socket,
    pool: LoginPool | None,
    tls: ssl.SSLContext | None = None,
    balance: tuple[ConnectionShares, int] | None = None,
) -> None:
    """Serve on ``listener`` until told to stop (in a forked child of the supervisor); over
    TLS with ``tls``, the context the supervisor built and checked (``serving/tls.py``); with
    ``balance``, taking only this worker's share of new connections (``WorkerServer``)."""
    presize_descriptor_table()  # inherited from the supervisor already; a no-op then
    if pool is not None:
        pool.keep_worker_ends()
    app = create_app(settings, placement=Placement.server_worker(settings), login_pool=pool)
    # What the app's start-up made lives as long as the worker; frozen, no collection walks
    # it again (a full collection walking it stalled the event loop for ~40 ms).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        # Passes new login connections to the login processes (strongroom.serving).
        http=LoginRoutingProtocol,
        lifespan="on",
        ws="none",  # no WebSocket route: nothing to import for them
        access_log=False,
        log_level="warning",
        # Our own logging (kit/logging.py): uvicorn's default configuration would give its
        # loggers plain-text handlers of their own.
        log_config=None,
        server_header=False,
        # The app judges X-Forwarded-For itself, from STRONGROOM_TRUSTED_PROXIES only.
        # uvicorn's own handling would trust it from 127.0.0.1 and rewrite the client address
        # before the app sees it (source IP spoofing into the audit trail and bound_ips).
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_context_factory=_given(tls) if tls is not None else None,
    )
    WorkerServer(config, balance=balance).run(sockets=[listener])


def _given(context: ssl.SSLContext) -> Callable[[Any, Any], ssl.SSLContext]:
    """uvicorn's context factory for a context made already (its own would read the files)."""

    def factory(_config: Any, _default: Any) -> ssl.SSLContext:
        return context

    return factory
