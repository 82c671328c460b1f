"""``/docs``: the API's reference in Swagger UI, from files this server serves itself.

    GET /docs                  docs_page/docs.html: the page (no inline script or style)
    GET /docs/static/<name>    one of ASSETS: Swagger UI's bundle and stylesheet (the
                               swagger-ui-bundle-v2 package) and docs_page/docs.js, which
                               starts it on /openapi.json; any other name is a 404

Nothing comes from another host, so the page works offline and behind a firewall; its
Content-Security-Policy (``web/headers.py``) allows nothing else to load. FastAPI's own pages
are off (``create_app``): its Swagger page loads from a CDN and starts with an inline script,
and ReDoc needs both too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, Response
from swagger_ui_bundle import swagger_ui_path

from strongroom.errors import NotFoundError

DOCS_PATH = "/docs"
PAGE_DIRECTORY = Path(__file__).parent / "docs_page"
SWAGGER_UI_DIRECTORY = Path(str(swagger_ui_path))

# An allowlist, not a directory: the package's other files (source maps, other bundles, its own
# index page with an inline script) are never served, and a name can never reach a path.
# Media types are given, not guessed from the system's tables: with nosniff, a script served
# under another type would not run.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (SWAGGER_UI_DIRECTORY / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (SWAGGER_UI_DIRECTORY / "swagger-ui.css", "text/css"),
    "docs.js": (PAGE_DIRECTORY / "docs.js", "text/javascript"),
}

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def docs_page() -> Response:
    return FileResponse(PAGE_DIRECTORY / "docs.html", media_type="text/html")


@router.get(DOCS_PATH + "/static/{name}")
async def docs_asset(name: str) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFoundError("no such file")
    path, media_type = asset
    return FileResponse(path, media_type=media_type)


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its files on ``app`` (its security headers: ``web/headers.py``)."""
    app.include_router(router)
