"""The console's root, and the answer for every console path that is not a page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.errors import NotFoundError
from strongroom.web.handling import ConsoleRoute
from strongroom.web.session import HOME

router = APIRouter(route_class=ConsoleRoute)
fallback = APIRouter(route_class=ConsoleRoute)


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", summary="Console home")
async def home() -> Response:
    return RedirectResponse(HOME, status_code=303)


@fallback.api_route(
    "/ui/{rest:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def no_such_page(request: Request, rest: str) -> Response:
    """Unknown console paths, and known ones asked with the wrong method: a 404 page."""
    raise NotFoundError("there is no such page")
