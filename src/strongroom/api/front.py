"""``StrongroomApp``: FastAPI, with Strongroom's own middleware in front of FastAPI's.

Starlette puts the middleware an app adds *inside* its own error middleware, and FastAPI puts
two more layers (a body limit and exception telemetry) outside that: five ASGI layers, two of
them wrapping ``send``, that every request crosses before it reaches the request envelope. On
a secret read they were about a tenth of a worker's CPU. Strongroom's own layers already do
their jobs for every request (``api/middleware.py``: the body limit, a bare JSON 500 for a bug,
the audit), so :class:`StrongroomApp` runs its front chain (the console's security headers,
the request envelope, the direct routes) first, and FastAPI's whole stack, routing included,
only behind it, for the requests the direct routes leave.

Anything raised below the envelope is still answered by it (JSON 500, audited, logged); an
error FastAPI's error middleware answers on the way (a route's bug) is answered with
Strongroom's JSON body too (``api/errors.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class StrongroomApp(FastAPI):
    """A FastAPI app whose HTTP requests go through :meth:`put_in_front`'s chain first."""

    _front: ASGIApp | None = None

    def put_in_front(self, build: Callable[[ASGIApp], ASGIApp]) -> None:
        """Send every HTTP request to ``build(framework)``, where ``framework`` is FastAPI's
        own stack (its middleware, routing and exception handlers). Lifespan and other
        scopes go to FastAPI directly."""
        self._front = build(self._framework)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self._front
        if front is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # what Starlette sets: endpoints find the services through it
        await front(scope, receive, send)

    async def _framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
