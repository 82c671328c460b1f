"""Rendering console pages: one Jinja2 environment, autoescaped, strict about undefined names.

Every page gets the signed-in session (or None), its CSRF token, the navigation section and
the request ID; templates add nothing inline (no ``<script>`` or ``style``) so the
Content-Security-Policy holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel
from starlette.responses import HTMLResponse

from strongroom.api.services import services_of
from strongroom.web.csrf import CSRF_FIELD
from strongroom.web.session import known_session

STATIC_PREFIX = "/ui/static"


def when(value: str | datetime | None) -> str:
    """An ISO 8601 moment as ``YYYY-MM-DD HH:MM:SS UTC``; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def as_body(model: BaseModel) -> dict[str, Any]:
    """A service's result as the API's body shows it (times as text, settings a method does
    not have absent), for templates that look fields up by name (``method.get(…)``)."""
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return body


def link(target: str, /, **params: Any) -> str:
    """``target`` with the non-empty ``params`` as its query string."""
    query = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{target}?{urlencode(query)}" if query else target


def joined(values: Any, separator: str = ", ") -> str:
    """A list setting for display or a form field (``a, b``); a scalar as text; None as ``""``."""
    if values is None:
        return ""
    if isinstance(values, list | tuple):
        return separator.join(str(value) for value in values)
    return str(values)


def datetime_local(value: str | None) -> str:
    """An ISO 8601 moment as the value of an ``<input type=datetime-local>`` (UTC, minutes)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M")


@cache
def environment() -> Environment:
    """The console's Jinja2 environment (templates packaged in ``strongroom/web/templates``)."""
    env = Environment(
        loader=PackageLoader("strongroom.web", "templates"),
        # Cross-site scripting: every value is HTML-escaped unless a template says otherwise.
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["joined"] = joined
    env.filters["datetime_local"] = datetime_local
    env.globals["link"] = link
    env.globals["static"] = STATIC_PREFIX
    env.globals["csrf_field"] = CSRF_FIELD
    return env


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    section: str = "",
) -> HTMLResponse:
    """Render ``template`` with the page context; the response carries ``status``."""
    session = known_session(request)
    services = services_of(request)
    values: dict[str, Any] = {
        "section": section,
        "session": session,
        "csrf": session.csrf if session is not None else "",
        "may_audit": session.may_read_audit(services) if session is not None else False,
        "request_id": request.scope.get("state", {}).get("request_id", ""),
        "notice": "",
        "errors": {},
        "values": {},
    }
    values.update(context or {})
    html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status)
