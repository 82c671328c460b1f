"""Login and the caller's own token (SPEC sections 3 and 4)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.api.services import audit_event_of, authorized, json_response, services_of
from strongroom.audit.writer import audited_write
from strongroom.auth.schemas import LoginRequest
from strongroom.kit.clock import isoformat_z

router = APIRouter(tags=["auth"])


_LOGIN_BODY = {
    "required": True,
    "content": {"application/json": {"schema": LoginRequest.model_json_schema()}},
}


@router.post(
    "/v1/auth/login",
    summary="Log in with an API key or a signed AWS request",
    openapi_extra={"requestBody": _LOGIN_BODY},
)
async def login(request: Request) -> Response:
    # The body is parsed and validated on the login loop, not here: a burst of logins must
    # cost the loop that serves reads as little as possible (bench/login.py).
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "auth.login"
    raw = await request.body()
    result = await services.login.login_json(raw, event.source_ip, event, event.time)
    return json_response(result)


@router.get("/v1/auth/token", summary="Describe the caller's token")
async def describe_token(request: Request) -> Response:
    _, event, caller = authorized(request, "auth.token.read")
    return json_response(
        {
            "access_id": caller.access_id,
            "auth_method": caller.auth_method_name,
            "identity": dict(caller.claims),
            "roles": list(caller.role_names),
            "issued_at": isoformat_z(caller.issued_at),
            "expires_at": isoformat_z(caller.expires_at),
            "expires_in": max(0, int((caller.expires_at - event.time).total_seconds())),
        }
    )


@router.delete("/v1/auth/token", status_code=204, summary="Revoke the caller's token")
async def revoke_token(request: Request) -> Response:
    services, event, caller = authorized(request, "auth.token.revoke")
    with audited_write(services.database, services.writer, event, 204) as connection:
        services.tokens.revoke(connection, caller.token_digest)
    return Response(status_code=204)
