"""The hot requests, a login and a secret read, answered without FastAPI's routing.

FastAPI's routing is about a dozen ASGI layers (exception middleware, an exit stack, the
router's walk past every route registered before the one that matches, the endpoint wrapper):
on the machines ``bench/`` runs on, about 0.4 ms of a login and a tenth of a secret read's CPU.
:class:`DirectRoutes` sits inside the request envelope (``api/middleware.py``: the audit event,
request ID, body limit and metrics stay the envelope's, as for any route) and sends the
requests it recognises straight to their endpoint functions, the very functions FastAPI routes
to, with the same error answers. Whatever it does not recognise (another method, HEAD included;
another path; a trailing slash) goes on to FastAPI, which answers it exactly as before; the
routes stay registered there too, for the OpenAPI schema.

``DIRECT_ROUTES=false`` sends every request through FastAPI's routing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from strongroom.api.errors import strongroom_error_response
from strongroom.errors import StrongroomError

Endpoint = Callable[[Request], Awaitable[Response]]
# A request path's parameters when the path is the route's, else None.
PathMatcher = Callable[[str], dict[str, str] | None]


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """One request answered directly: its method, which paths, and the endpoint of ``route``
    (the FastAPI route it stands for: ``scope["route"]`` labels the request's metrics)."""

    method: str
    match: PathMatcher
    endpoint: Endpoint
    route: BaseRoute


def exact_path(path: str) -> PathMatcher:
    """Matches ``path`` alone, to the letter."""

    def match(candidate: str) -> dict[str, str] | None:
        return {} if candidate == path else None

    return match


def path_below(prefix: str, parameter: str, *, unless_ends_with: str) -> PathMatcher:
    """Matches ``prefix`` followed by at least one character, as Starlette's ``{name:path}``
    does, the rest becoming ``parameter``; a path ending in ``unless_ends_with`` is left to
    FastAPI (a route registered before this one, such as ``.../{name:path}/versions``, takes
    it there)."""

    def match(candidate: str) -> dict[str, str] | None:
        if (
            len(candidate) <= len(prefix)
            or not candidate.startswith(prefix)
            or candidate.endswith(unless_ends_with)
        ):
            return None
        return {parameter: candidate[len(prefix) :]}

    return match


def route_of(routes: Sequence[BaseRoute], method: str, path: str) -> BaseRoute:
    """The route of ``routes`` for ``method`` whose path template is ``path``."""
    return next(
        r
        for r in routes
        if getattr(r, "path", None) == path and method in (getattr(r, "methods", None) or ())
    )


class DirectRoutes:
    """ASGI middleware: the requests of ``routes`` go straight to their endpoints (module
    docstring); the first route that matches answers."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[DirectRoute]) -> None:
        self.app = app
        self._routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            for direct in self._routes:
                if direct.method != method:
                    continue
                params = direct.match(path)
                if params is None:
                    continue
                scope["route"] = direct.route
                scope["path_params"] = params
                try:
                    response = await direct.endpoint(Request(scope, receive))
                except StrongroomError as exc:
                    response = strongroom_error_response(scope, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
