"""The audit trail, for callers with audit-rule read on ``/`` (SPEC sections 5 and 7)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.api.openapi import TOKEN_REQUIRED, errors
from strongroom.api.services import authorized, json_response
from strongroom.audit.schemas import AuditRecordList
from strongroom.audit.service import AuditFilters

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/audit",
    summary="Recent audit events, newest first",
    response_model=AuditRecordList,
    responses=errors(400, 401, 403, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def list_audit_events(
    request: Request,
    since: datetime | None = None,
    access_id: str | None = Query(default=None, max_length=32),
    path: str | None = Query(default=None, max_length=600),
    outcome: str | None = Query(default=None, pattern="^(success|denied|error|failure)$"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Response:
    services, context, caller = await authorized(request, "audit.read")
    filters = AuditFilters(since, access_id, path, outcome, limit)
    return json_response(await services.audit.recent(caller, filters, context))
