"""Auth methods (SPEC section 5)."""

from __future__ import annotations

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from strongroom.api.openapi import TOKEN_REQUIRED, errors
from strongroom.api.services import authorized, json_response
from strongroom.auth_methods.schemas import (
    AuthMethod,
    AuthMethodCreate,
    AuthMethodCreated,
    AuthMethodList,
    AuthMethodUpdate,
)

router = APIRouter(tags=["auth methods"])


@router.post(
    "/v1/auth-methods",
    status_code=201,
    summary="Create an auth method",
    response_model=AuthMethodCreated,
    responses=errors(400, 401, 403, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def create_auth_method(request: Request, body: AuthMethodCreate = Body()) -> Response:
    services, context, caller = await authorized(request, "auth_method.create")
    return json_response(
        await services.work.run(services.auth_methods.create, caller, body, context), 201
    )


@router.get(
    "/v1/auth-methods",
    summary="List the auth methods the caller may list",
    response_model=AuthMethodList,
    responses=errors(401, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def list_auth_methods(request: Request) -> Response:
    services, context, caller = await authorized(request, "auth_method.list")
    return json_response(await services.work.run(services.auth_methods.list, caller, context))


@router.get(
    "/v1/auth-methods/{name}",
    summary="Show an auth method",
    response_model=AuthMethod,
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def get_auth_method(request: Request, name: str) -> Response:
    services, context, caller = await authorized(request, "auth_method.read")
    return json_response(await services.work.run(services.auth_methods.get, caller, name, context))


@router.patch(
    "/v1/auth-methods/{name}",
    summary="Change an auth method",
    response_model=AuthMethod,
    responses=errors(400, 401, 403, 404, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def update_auth_method(request: Request, name: str, body: AuthMethodUpdate) -> Response:
    """Needs auth-method-rule ``update``. A change that may let more identities log in, or keep
    tokens longer, also needs every grant of the roles associated with the method."""
    services, context, caller = await authorized(request, "auth_method.update")
    changed = await services.work.run_async(
        services.auth_methods.update, caller, name, body, context
    )
    return json_response(changed)


@router.delete(
    "/v1/auth-methods/{name}",
    status_code=204,
    summary="Delete an auth method",
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def delete_auth_method(request: Request, name: str) -> Response:
    services, context, caller = await authorized(request, "auth_method.delete")
    await services.work.run(services.auth_methods.delete, caller, name, context)
    return Response(status_code=204)
