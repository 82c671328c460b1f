"""The worker's HTTP protocol: uvicorn's, plus a look at each connection's first bytes.

uvicorn builds one protocol object per connection with the lifespan state as ``app_state``;
the app's lifespan puts the worker's :class:`~strongroom.serving.handoff.LoginHandoff` there
under ``LOGIN_HANDOFF``. Without it (one-process set-ups, tests) this is uvicorn's protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strongroom.serving.handoff import LoginHandoff
from strongroom.serving.state import LOGIN_HANDOFF


class LoginRoutingProtocol(HttpToolsProtocol):
    """Hands a new connection that starts with a login to a login process, if one is ready."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handoff = self.app_state.get(LOGIN_HANDOFF)
        self._handoff: LoginHandoff | None = handoff if isinstance(handoff, LoginHandoff) else None

    def data_received(self, data: bytes) -> None:
        handoff, self._handoff = self._handoff, None  # only a connection's first bytes count
        if handoff is not None and self._hand_over(handoff, data):
            return
        super().data_received(data)

    def _hand_over(self, handoff: LoginHandoff, data: bytes) -> bool:
        transport: asyncio.Transport = self.transport
        connection = transport.get_extra_info("socket")
        # uvicorn's set of request tasks in progress on this worker (all connections).
        idle = not self.server_state.tasks
        if connection is None or not handoff.offer(connection, data, worker_idle=idle):
            return False
        # The login process holds the connection now. Closing our copy of the descriptor
        # neither sends FIN nor drops unread bytes: the socket lives on in the login process.
        transport.pause_reading()
        transport.close()
        return True
