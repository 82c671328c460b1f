"""Secrets and listings (SPEC section 5). The read endpoints are the hot path: one pooled
connection, no dependency injection, orjson out."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.api.services import audit_event_of, caller_of, json_response, services_of
from strongroom.secrets.schemas import GetSecretValue, SecretCreate, SecretUpdate

router = APIRouter(tags=["secrets"])


@router.post("/v1/secrets", status_code=201, summary="Create a secret (version 1)")
async def create_secret(request: Request, body: SecretCreate) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.create"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    return json_response(services.secrets.create(caller, body, event, event.time), 201)


# Registered before the plain item route: `{name:path}` would otherwise swallow "/versions".
@router.get("/v1/secrets/{name:path}/versions", summary="List a secret's versions (no values)")
async def secret_versions(request: Request, name: str) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.versions"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    return json_response(services.secrets.versions(caller, name, event, event.time))


@router.get("/v1/secrets/{name:path}", summary="Read a secret (newest version unless ?version=N)")
async def read_secret(
    request: Request, name: str, version: int | None = Query(default=None, ge=1, le=2**31)
) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.read"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
        result = services.secrets.read(connection, caller, name, version, event, event.time)
    return json_response(result)


@router.put("/v1/secrets/{name:path}", summary="Write a new version of a secret")
async def update_secret(request: Request, name: str, body: SecretUpdate) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.update"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    return json_response(services.secrets.update(caller, name, body, event, event.time))


@router.delete("/v1/secrets/{name:path}", status_code=204, summary="Delete a secret or a version")
async def delete_secret(
    request: Request, name: str, version: int | None = Query(default=None, ge=1, le=2**31)
) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.delete"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    services.secrets.delete(caller, name, version, event, event.time)
    return Response(status_code=204)


@router.post("/v1/get-secret-value", summary="Read several secrets at once")
async def get_secret_value(request: Request, body: GetSecretValue) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "secret.read_many"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
        result = services.secrets.read_many(connection, caller, body, event, event.time)
    return json_response(result)


@router.get("/v1/items", summary="List the items and folders the caller may list")
async def list_items(
    request: Request,
    path: str = Query(default="/", max_length=600),
    recursive: bool = False,
) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "item.list"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    return json_response(services.secrets.list(caller, path, recursive, event, event.time))


@router.get("/v1/describe-item", summary="An item's metadata, without its value")
async def describe_item(request: Request, name: str = Query(max_length=600)) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "item.describe"
    with services.database.read() as connection:
        caller = caller_of(request, connection)
    return json_response(services.secrets.describe(caller, name, event, event.time))
