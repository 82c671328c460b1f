"""Health, readiness and metrics: unauthenticated, unaudited, cheap."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric
from sqlalchemy import select
from starlette.responses import Response

from strongroom.api.schemas import Health, Readiness
from strongroom.api.services import json_response, services_of
from strongroom.db.migrate import is_up_to_date
from strongroom.db.tables import counters

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
        with services.database.read() as connection:
            connection.execute(select(counters.c.value).limit(1)).all()
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


class SettledMetricFiles(multiprocess.MultiProcessCollector):
    """prometheus_client's collector of every process's metric files, less those still empty.

    A process creates its file and only then sizes it (``MmapedDict``); a scrape that met one
    at 0 bytes failed whole with ``struct.error`` (client_python issue 1199): a 500 from
    /metrics whenever a worker or login process was starting, or for good if one was killed
    just then. An empty file holds nothing yet, and a file is never emptied once sized.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(path) > 0:
                    files.append(path)
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]


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
async def metrics() -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        SettledMetricFiles(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
