"""Health, readiness and metrics: unauthenticated, unaudited, cheap."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from strongroom.api.schemas import Health, Readiness
from strongroom.api.services import Services, json_response, services_of
from strongroom.db.engine import Database
from strongroom.db.migrate import is_up_to_date
from strongroom.db.readiness import check_database
from strongroom.errors import ServiceUnavailableError
from strongroom.metrics.exposition import Exposition
from strongroom.serving.placement import Placement, ProcessRole

router = APIRouter(tags=["sys"])


@router.get("/v1/sys/health", summary="Liveness: the process answers", response_model=Health)
async def health() -> Response:
    # Never touches the database: a database that is slow or gone must not make a live
    # process look dead (its orchestrator would restart it for nothing). /v1/sys/ready says.
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
        # Through the database seam: on PostgreSQL a database that does not answer makes this
        # "unavailable" after DB_TIMEOUT_SECONDS, and never holds up the event loop.
        checks["migrations"] = await services.work.run(_migrations, services.database)
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure rather than raising it
        checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["keys"] = "unknown"
    if checks["database"] == "ok":
        try:
            checks["keys"] = await services.work.run(_keys_check, services)
        except ServiceUnavailableError:  # the database stopped answering meanwhile
            checks["keys"] = "unknown"
            checks["database"] = "unavailable: ServiceUnavailableError"
    ok = all(value == "ok" for value in checks.values())
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )


def _keys_check(services: Services) -> str:
    """Whether this server holds every data key the database has (or can load it now): a
    server that cannot open the values a rotation seals under a new key is not ready."""
    try:
        services.keyring.catch_up()
    except ServiceUnavailableError:
        return "unavailable: a newer data key cannot be unwrapped with this server's master key"
    return "ok"


def _migrations(database: Database) -> str:
    """ "ok" or "pending", after one query that proves the database answers."""
    check_database(database)
    return "ok" if is_up_to_date(database) else "pending"


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
        in_server = placement is not None and placement.role is not ProcessRole.IN_PROCESS
        exposition = state.metrics = Exposition(os.getppid() if in_server else None)
    return exposition
