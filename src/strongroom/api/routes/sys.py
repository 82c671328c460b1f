"""Health, readiness and metrics: unauthenticated, unaudited, cheap."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from strongroom.api.schemas import Health, Readiness
from strongroom.api.services import json_response, services_of
from strongroom.db.migrate import is_up_to_date
from strongroom.db.readiness import check_database
from strongroom.metrics.exposition import Exposition
from strongroom.serving.placement import Placement, Role

router = APIRouter(tags=["sys"])


@router.get("/v1/sys/health", summary="Liveness: the process answers", response_model=Health)
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/v1/sys/ready",
    summary="Readiness: database, migrations and keys",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: the checks say why."}},
)
async def ready(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        check_database(services.database)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if is_up_to_date(services.database) else "pending"
    except Exception as exc:  # readiness reports any failure rather than raising it
        checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["keys"] = "ok" if services.keys.keyring.newest_id >= 1 else "missing"
    ok = all(value == "ok" for value in checks.values())
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Every process's metrics (``strongroom.metrics`` lists them)."""
    return Response(_exposition(request).render(), media_type=CONTENT_TYPE_LATEST)


def _exposition(request: Request) -> Exposition:
    """This app's, made at the first scrape: a server's worker or login process describes
    every process of the server (its parent, the supervisor, and the supervisor's children);
    an app in its caller's process describes that process."""
    state = request.app.state
    exposition: Exposition | None = getattr(state, "metrics", None)
    if exposition is None:
        placement: Placement | None = getattr(state, "placement", None)
        in_server = placement is not None and placement.role is not Role.IN_PROCESS
        exposition = state.metrics = Exposition(os.getppid() if in_server else None)
    return exposition
