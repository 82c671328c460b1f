"""Secrets and listings (SPEC section 5). The read endpoint is the hot path: driver-level
queries, no dependency injection or parameter solving, orjson out, and no FastAPI routing
(:func:`direct_route`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.api.direct_routes import DirectRoute, path_below, route_of
from strongroom.api.openapi import TOKEN_REQUIRED, errors
from strongroom.api.services import authorized, json_response
from strongroom.errors import InvalidRequestError
from strongroom.secrets.schemas import (
    GetSecretValue,
    Item,
    ItemListing,
    Secret,
    SecretCreate,
    SecretUpdate,
    SecretValues,
    SecretVersions,
    SecretWritten,
)

router = APIRouter(tags=["secrets"])
MAX_VERSION = 2**31


@router.post(
    "/v1/secrets",
    status_code=201,
    summary="Create a secret (version 1)",
    response_model=SecretWritten,
    responses=errors(400, 401, 403, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def create_secret(request: Request, body: SecretCreate) -> Response:
    services, context, caller = await authorized(request, "secret.create")
    return json_response(
        await services.work.run(services.secrets.create, caller, body, context), 201
    )


# Registered before the plain item route: `{name:path}` would otherwise swallow "/versions".
@router.get(
    "/v1/secrets/{name:path}/versions",
    summary="List a secret's versions (no values)",
    response_model=SecretVersions,
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def secret_versions(request: Request, name: str) -> Response:
    services, context, caller = await authorized(request, "secret.versions")
    return json_response(await services.work.run(services.secrets.versions, caller, name, context))


# Declared by hand: the endpoint reads them from the request itself (see read_secret).
_NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "the item's path, without its leading slash",
}
_VERSION_PARAMETER = {
    "name": "version",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    "description": "the version to read; the newest when absent",
}


def _version_query(request: Request) -> int | None:
    """``?version=N`` parsed by hand: FastAPI's parameter solving costs ~90 µs per read."""
    if not request.scope.get("query_string"):
        return None  # the usual read: no query string to parse (~4 µs)
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION:
        raise InvalidRequestError(f"version must be a whole number from 1 to {MAX_VERSION}")
    return int(raw)


# The service returns the response model itself, validated once as it is built; the endpoint
# returns the Response it wrote from it, which FastAPI sends untouched (no second validation or
# serialisation).
@router.get(
    "/v1/secrets/{name:path}",
    summary="Read a secret (newest version unless ?version=N)",
    response_model=Secret,
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra={**TOKEN_REQUIRED, "parameters": [_NAME_PARAMETER, _VERSION_PARAMETER]},
)
async def read_secret(request: Request) -> Response:
    # The hot path: the request object only, no dependency or parameter solving.
    services, context, caller = await authorized(request, "secret.read")
    name: str = request.path_params["name"]
    result = await services.secrets.read(caller, name, _version_query(request), context)
    return json_response(result)


def direct_route() -> DirectRoute:
    """The read, answered without FastAPI's routing (``api/direct_routes.py``): any path below
    ``/v1/secrets/`` but the versions listing's, as FastAPI would route it."""
    return DirectRoute(
        "GET",
        path_below("/v1/secrets/", "name", unless_ends_with="/versions"),
        read_secret,
        route_of(router.routes, "GET", "/v1/secrets/{name:path}"),
    )


@router.put(
    "/v1/secrets/{name:path}",
    summary="Write a new version of a secret",
    response_model=SecretWritten,
    responses=errors(400, 401, 403, 404, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def update_secret(request: Request, name: str, body: SecretUpdate) -> Response:
    services, context, caller = await authorized(request, "secret.update")
    return json_response(
        await services.work.run(services.secrets.update, caller, name, body, context)
    )


@router.delete(
    "/v1/secrets/{name:path}",
    status_code=204,
    summary="Delete a secret or a version",
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def delete_secret(
    request: Request, name: str, version: int | None = Query(default=None, ge=1, le=MAX_VERSION)
) -> Response:
    services, context, caller = await authorized(request, "secret.delete")
    await services.work.run(services.secrets.delete, caller, name, version, context)
    return Response(status_code=204)


@router.post(
    "/v1/get-secret-value",
    summary="Read several secrets at once",
    response_model=SecretValues,
    responses=errors(400, 401, 403, 404, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def get_secret_value(request: Request, body: GetSecretValue) -> Response:
    services, context, caller = await authorized(request, "secret.read_many")
    result = await services.secrets.read_many(caller, body, context)
    return json_response(result)


@router.get(
    "/v1/items",
    summary="List the items and folders the caller may list",
    response_model=ItemListing,
    responses=errors(400, 401, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def list_items(
    request: Request,
    path: str = Query(default="/", max_length=600),
    recursive: bool = False,
) -> Response:
    services, context, caller = await authorized(request, "item.list")
    return json_response(
        await services.work.run(services.secrets.list, caller, path, recursive, context)
    )


@router.get(
    "/v1/describe-item",
    summary="An item's metadata, without its value",
    response_model=Item,
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def describe_item(request: Request, name: str = Query(max_length=600)) -> Response:
    services, context, caller = await authorized(request, "item.describe")
    return json_response(await services.work.run(services.secrets.describe, caller, name, context))
