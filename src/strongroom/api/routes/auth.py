"""Login and the caller's own token (SPEC sections 3 and 4)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.api.direct_routes import DirectRoute, exact_path, route_of
from strongroom.api.openapi import TOKEN_REQUIRED, errors
from strongroom.api.services import (
    Services,
    audit_event_of,
    authorized,
    json_response,
    services_of,
)
from strongroom.audit.event import AuditEvent
from strongroom.auth.schemas import LoginRequest, Token, TokenDescription
from strongroom.request_context import RequestContext

router = APIRouter(tags=["auth"])


_LOGIN_BODY = {
    "required": True,
    "content": {"application/json": {"schema": LoginRequest.model_json_schema()}},
}


LOGIN_PATH = "/v1/auth/login"


async def _login(services: Services, event: AuditEvent, request: Request) -> Response:
    # Named before the body is read: a client that hangs up mid-body is audited as a login.
    event.action = "auth.login"
    raw = await request.body()
    # The body is parsed and validated on the login loop, not here: a burst of logins must
    # cost the loop that serves reads as little as possible (bench/login.py).
    result = await services.login.login_json(raw, RequestContext.of(event))
    return json_response(result)


@router.post(
    LOGIN_PATH,
    summary="Log in with an API key or a signed AWS request",
    response_model=Token,
    responses=errors(400, 401, 413, 429, 502, 503),
    openapi_extra={"requestBody": _LOGIN_BODY},
)
async def login(request: Request) -> Response:
    return await _login(services_of(request), audit_event_of(request), request)


def direct_route() -> DirectRoute:
    """The login, answered without FastAPI's routing (``api/direct_routes.py``)."""
    return DirectRoute(
        "POST", exact_path(LOGIN_PATH), login, route_of(router.routes, "POST", LOGIN_PATH)
    )


@router.get(
    "/v1/auth/token",
    summary="Describe the caller's token",
    response_model=TokenDescription,
    responses=errors(401, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def describe_token(request: Request) -> Response:
    services, context, caller = await authorized(request, "auth.token.read")
    return json_response(services.tokens.describe(caller, context))


@router.delete(
    "/v1/auth/token",
    status_code=204,
    summary="Revoke the caller's token",
    responses=errors(401, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def revoke_token(request: Request) -> Response:
    services, context, caller = await authorized(request, "auth.token.revoke")
    await services.work.run(services.tokens.revoke_own, caller, context, 204)
    return Response(status_code=204)
