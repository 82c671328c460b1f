"""The framework floor for ``read_path.py``: a bare FastAPI endpoint with constant JSON.

Same route shape and response encoding as Strongroom's secret read (``{name:path}``, orjson
bytes in a plain ``Response``), but no middleware, no database, no auth, no audit. Run by
``read_path.py`` as ``uvicorn bare_app:app --app-dir bench`` with Strongroom's server settings.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from starlette.responses import Response

BODY = orjson.dumps(
    {
        "name": "/bench/db-password",
        "value": "constant",
        "version": 1,
        "created_at": "2026-01-01T00:00:00Z",
    }
)

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/v1/secrets/{name:path}")
async def read_secret(name: str) -> Response:
    return Response(BODY, media_type="application/json")
