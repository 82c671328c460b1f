"""The audit trail: recent events, filtered by access ID, path and outcome.

Needs audit-rule ``read`` on ``/``, like ``GET /v1/audit``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.api.services import request_context, services_of
from strongroom.audit.service import AuditFilters
from strongroom.rbac import Capability, RuleType
from strongroom.web.guard import signed_in
from strongroom.web.handling import ConsoleRoute, note_reason
from strongroom.web.rendering import render

router = APIRouter(route_class=ConsoleRoute)
SECTION = "audit"

OUTCOMES = ("success", "denied", "error", "failure")
LIMITS = (50, 100, 250, 500, 1000)
DEFAULT_LIMIT = 100
MAX_ACCESS_ID = 32
MAX_PATH = 600


@router.get("/ui/audit", summary="Console: recent audit events")
async def audit_page(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "audit.read"
    context.event.path = "/"
    session = await signed_in(request)
    # Before the filters are judged: without the right, a caller learns nothing from the page.
    session.caller.require(Capability.READ, RuleType.AUDIT, "/", context.now)

    params = request.query_params
    filters = {
        "access_id": params.get("access_id", "").strip(),
        "path": params.get("path", "").strip(),
        "outcome": params.get("outcome", "").strip(),
        "limit": params.get("limit", "").strip() or str(DEFAULT_LIMIT),
    }
    errors: dict[str, str] = {}
    if len(filters["access_id"]) > MAX_ACCESS_ID:
        errors["access_id"] = f"An access ID has at most {MAX_ACCESS_ID} characters."
    if len(filters["path"]) > MAX_PATH:
        errors["path"] = f"A path has at most {MAX_PATH} characters."
    if filters["outcome"] and filters["outcome"] not in OUTCOMES:
        errors["outcome"] = f"The outcome is one of {', '.join(OUTCOMES)}."
    if not filters["limit"].isdigit() or not 1 <= int(filters["limit"]) <= max(LIMITS):
        errors["limit"] = f"Show between 1 and {max(LIMITS)} events."
    events: list[dict[str, object]] = []
    if errors:
        note_reason(request, "; ".join(errors.values()))
    else:
        found = await services.audit.recent(
            session.caller,
            AuditFilters(
                access_id=filters["access_id"] or None,
                path=filters["path"] or None,
                outcome=filters["outcome"] or None,
                limit=int(filters["limit"]),
            ),
            context,
        )
        events = [record.model_dump(mode="json") for record in found.events]
    return render(
        request,
        "audit.html",
        {
            "events": events,
            "values": filters,
            "errors": errors,
            "outcomes": OUTCOMES,
            "limits": LIMITS,
            "filtered": any(filters[key] for key in ("access_id", "path", "outcome")),
        },
        status=400 if errors else 200,
        section=SECTION,
    )
