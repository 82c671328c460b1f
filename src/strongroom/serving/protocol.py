"""The worker's protocol for new connections: look at the first bytes, then pass them on.

uvicorn builds one protocol object per connection with the lifespan state as ``app_state``;
the app's lifespan puts the worker's :class:`~strongroom.serving.handoff.LoginHandoff` there
under ``LOGIN_HANDOFF``. A new connection starts with :class:`LoginRoutingProtocol`, which
does nothing but wait for the first bytes:

- a login goes to a login process (:meth:`LoginHandoff.offer`), and this worker forgets the
  connection;
- anything else (or a login nobody can take) gets uvicorn's HTTP protocol (with Vault's
  ``LIST`` and the limits on request heads: :mod:`~strongroom.serving.http_protocol`), which
  takes over the transport as if it had had it from the start.

Either way the connection's accept time goes along: a request head must be complete within
10 s of it, however the time was spent (waiting for the first bytes, in a handoff, or after).

Why not uvicorn's protocol from the start: at the start of a burst a worker accepts a hundred
login connections within milliseconds, and every read it serves meanwhile waits behind them.
uvicorn's protocol costs a parser, two loggers' look-ups and two address system calls per
connection, all thrown away for a connection that leaves; without them a login handed over
costs the worker about 40 % less CPU (``bench/login_handoff.py``). Without a handoff
(one-process set-ups, tests) the connection goes to uvicorn's protocol at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.server import ServerState

from strongroom.serving.handoff import LoginHandoff
from strongroom.serving.http_protocol import ServerHttpProtocol
from strongroom.serving.state import LOGIN_HANDOFF


class LoginRoutingProtocol(asyncio.Protocol):
    """A new connection until its first bytes arrive; see the module docstring.

    uvicorn builds it with the arguments of its own HTTP protocols, which it passes on.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop
        handoff = app_state.get(LOGIN_HANDOFF)
        self._handoff: LoginHandoff | None = handoff if isinstance(handoff, LoginHandoff) else None
        self._transport: asyncio.Transport | None = None
        self._first_bytes_timer: asyncio.TimerHandle | None = None
        self._http: ServerHttpProtocol | None = None
        self._accepted_at = 0.0  # time.monotonic(): the head's time runs from here

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._accepted_at = time.monotonic()
        # uvloop's transports behave as asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        if self._handoff is None:
            self._become_http(self._transport)
            return
        # Slowloris: a connection that never sends a byte would hold a descriptor for ever
        # (uvicorn's keep-alive timeout only starts after a first response). The wait for the
        # first bytes gets the keep-alive timeout as its bound.
        self._first_bytes_timer = asyncio.get_running_loop().call_later(
            self._config.timeout_keep_alive, self._transport.close
        )
        self._track(True)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if self._http is not None or transport is None:  # not reached: the swap reroutes
            return
        self._cancel_timer()
        self._track(False)
        handoff, self._handoff = self._handoff, None
        if handoff is not None and self._hand_over(transport, handoff, data):
            return
        self._become_http(transport).data_received(data)

    # Once uvicorn's protocol has the transport (set_protocol), the transport calls it directly:
    # the methods below only see a connection that has sent nothing yet.

    def eof_received(self) -> bool | None:
        return None  # closed before a byte was sent: the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._track(False)

    # SIGTERM (SPEC section 11): uvicorn stops accepting, then calls ``shutdown()`` on every
    # connection in its set and waits until the set is empty. A connection still waiting for
    # its first bytes is in that set too: it has nothing in flight and is closed at once.
    # Outside the set it was invisible to the shutdown, and a client that sent its request
    # later was served by a worker that should have stopped (and kept it from exiting).

    def shutdown(self) -> None:
        if self._transport is not None and self._http is None:
            self._transport.close()

    def _track(self, waiting: bool) -> None:
        connections = cast(set[Any], self._server_state.connections)
        if waiting:
            connections.add(self)
        else:
            connections.discard(self)

    def _cancel_timer(self) -> None:
        if self._first_bytes_timer is not None:
            self._first_bytes_timer.cancel()
            self._first_bytes_timer = None

    def _become_http(self, transport: asyncio.Transport) -> ServerHttpProtocol:
        """Give the connection to uvicorn's HTTP protocol (it owns the transport from now on)."""
        # uvicorn's protocol, with Vault's LIST method and the head limits (http_protocol.py).
        http = ServerHttpProtocol(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=self._loop,
            head_started=self._accepted_at,
        )
        self._http = http
        transport.set_protocol(http)
        http.connection_made(transport)
        return http

    def _hand_over(self, transport: asyncio.Transport, handoff: LoginHandoff, data: bytes) -> bool:
        connection = transport.get_extra_info("socket")
        # uvicorn's set of request tasks in progress on this worker (all connections).
        idle = not self._server_state.tasks
        if connection is None or not handoff.offer(
            connection, data, worker_idle=idle, accepted_at=self._accepted_at
        ):
            return False
        # The login process holds the connection now. Closing our copy of the descriptor
        # neither sends FIN nor drops unread bytes: the socket lives on in the login process.
        transport.pause_reading()
        transport.close()
        return True
