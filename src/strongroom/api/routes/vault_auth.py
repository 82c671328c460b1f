"""Vault's AWS login and token self-service (SPEC section 10), answered as Vault answers.

``POST``/``PUT /v1/auth/aws/login`` (hvac posts, Vault's Go client puts), ``GET
/v1/auth/token/lookup-self``, ``POST``/``PUT /v1/auth/token/revoke-self``. Audited as the
native ``auth.login``, ``auth.token.read`` and ``auth.token.revoke``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.api.openapi import TOKEN_REQUIRED, vault_errors
from strongroom.api.services import authorized, bearer_token, request_context, services_of
from strongroom.api.vault_route import VaultRoute, vault_no_content, vault_response
from strongroom.vault.schemas import VaultAuthResponse, VaultAwsLogin, VaultTokenLookupResponse

router = APIRouter(tags=["vault"], route_class=VaultRoute)

_LOGIN_BODY = {
    "required": True,
    "content": {"application/json": {"schema": VaultAwsLogin.model_json_schema()}},
}


_LOGIN: dict[str, Any] = {
    "summary": "Vault: log in with a signed AWS request (role: access ID or auth method name)",
    "response_model": VaultAuthResponse,
    "responses": vault_errors(400, 413, 429, 502, 503),
    "openapi_extra": {"requestBody": _LOGIN_BODY},
}


@router.post("/v1/auth/aws/login", **_LOGIN)
@router.put("/v1/auth/aws/login", **_LOGIN)
async def vault_aws_login(request: Request) -> Response:
    context = request_context(request)
    # Named before the body is read: a client that hangs up mid-body is audited as a login.
    context.event.action = "auth.login"
    raw = await request.body()
    auth = await services_of(request).vault.login(raw, context)
    return vault_response(request, auth=auth)


@router.get(
    "/v1/auth/token/lookup-self",
    summary="Vault: describe the caller's token",
    response_model=VaultTokenLookupResponse,
    responses=vault_errors(403, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def vault_lookup_self(request: Request) -> Response:
    services, context, caller = await authorized(request, "auth.token.read")
    data = services.vault.token_lookup(caller, bearer_token(request), context)
    return vault_response(request, data=data)


_REVOKE: dict[str, Any] = {
    "status_code": 204,
    "summary": "Vault: revoke own token",
    "responses": vault_errors(403, 503),
    "openapi_extra": TOKEN_REQUIRED,
}


@router.post("/v1/auth/token/revoke-self", **_REVOKE)
@router.put("/v1/auth/token/revoke-self", **_REVOKE)
async def vault_revoke_self(request: Request) -> Response:
    services, context, caller = await authorized(request, "auth.token.revoke")
    await services.work.run(services.vault.revoke_self, caller, context)
    return vault_no_content()
