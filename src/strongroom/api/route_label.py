"""The ``route`` label of the request metrics: the route's template, never the raw path.

A label value is a time series of its own in Prometheus. Labelled with the raw path, every
secret name, every token in a mistyped URL, every path a scanner tries would be a new series:
clients could grow the metrics without bound (and read names back from them). So the label is
the template of the route that served the request (``/v1/secrets/{name:path}``), or
``unmatched`` when no route did (404s of every kind, and requests refused before routing).

FastAPI's routes put themselves in ``scope["route"]``; Starlette's own (``/docs``,
``/openapi.json``) and mounts (``/ui/static``) only leave their endpoint in
``scope["endpoint"]``, which is looked up among the app's routes (built once per app).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount, Route
from starlette.types import Scope

UNMATCHED = "unmatched"
_TEMPLATES = "strongroom.route_templates"


def route_label(scope: Scope) -> str:
    """The template of the route that served ``scope``'s request, or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    if endpoint is None or app is None:
        return UNMATCHED
    return _templates(app).get(id(endpoint), UNMATCHED)


def _templates(app: Any) -> dict[int, str]:
    state = getattr(app, "state", None)
    templates: dict[int, str] | None = getattr(state, _TEMPLATES, None) if state else None
    if templates is None:
        templates = {}
        for route in getattr(app, "routes", ()):
            if isinstance(route, Mount):
                templates.setdefault(id(route.app), route.path + "/{path:path}")
            elif isinstance(route, Route):
                templates.setdefault(id(route.endpoint), route.path)
        if state is not None:
            setattr(state, _TEMPLATES, templates)
    return templates
