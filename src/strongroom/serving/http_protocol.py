"""The HTTP protocol every connection of a server is served with, in workers and login processes.

:class:`ServerHttpProtocol` is uvicorn's httptools protocol with our additions, each a
cooperative subclass (every override calls ``super()``):

- :class:`~strongroom.serving.vault_methods.VaultMethodsProtocol`: Vault's ``LIST`` method;
- :class:`~strongroom.serving.coalesced_writes.CoalescedWritesProtocol`: each response's head
  and body leave in one write;
- :class:`~strongroom.serving.head_limits.BoundedHttpProtocol`: request heads bounded in size
  (431) and time (slowloris), malformed HTTP answered in the API's error shape.

A worker's connections get it from :class:`~strongroom.serving.protocol.LoginRoutingProtocol`
(at once, or after their first bytes), a login process's through
:class:`~strongroom.serving.login_process.PassedConnectionProtocol`; either way it holds for the
first request and for every later one on a kept connection.

The order of the bases is part of the contract: ``VaultMethodsProtocol.data_received`` rewrites
a request's method token and passes the chunk on, while ``BoundedHttpProtocol.data_received``
feeds the parser itself (uvicorn's, with the limits) and calls no further ``data_received``.
With the bounded protocol first, ``LIST`` would never be rewritten and every Vault listing
would be a 400. The rewrite keeps every byte's position (``LIST`` and ``LINK`` are the same
length), so the head limits count exactly what the client sent.
"""

from __future__ import annotations

from strongroom.serving.coalesced_writes import CoalescedWritesProtocol
from strongroom.serving.head_limits import BoundedHttpProtocol
from strongroom.serving.vault_methods import VaultMethodsProtocol


class ServerHttpProtocol(VaultMethodsProtocol, CoalescedWritesProtocol, BoundedHttpProtocol):
    """uvicorn's httptools protocol with ``LIST``, one write per response and the head limits
    (see the module docstring).

    Built with :class:`BoundedHttpProtocol`'s arguments (``head_started``, ``limits``).
    """
