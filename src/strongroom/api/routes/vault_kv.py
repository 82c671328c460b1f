"""Vault's KV version 2 at the mount ``secret`` (SPEC section 10), answered as Vault answers.

    GET            /v1/secret/data/<p>[?version=N]     read (secret.read)
    POST | PUT     /v1/secret/data/<p>                 write {"data", "options": {"cas"}}
                                                       (secret.create or secret.update;
                                                       secret.write if refused before either)
    LIST, or GET ?list=true   /v1/secret/metadata/<p>  keys the caller may list (item.list)
    GET            /v1/secret/metadata/<p>             the key's versions (secret.versions)
    DELETE         /v1/secret/metadata/<p>             the key and all its versions
                                                       (secret.delete)
    GET            /v1/sys/internal/ui/mounts/<path>   the mount serving a path: what the
                                                       CLIs and agents ask first
    DELETE         /v1/secret/data/<p>                 405: Vault's soft delete has no
                                                       counterpart here

Anything else under these prefixes is answered in Vault's shape by the app's error handlers
(``api/errors.py``): 404 ``{"errors": []}``, 405 ``{"errors": ["unsupported operation"]}``.

Vault's ``LIST`` method reaches the app through ``serving/vault_methods.py`` on a server
(the HTTP parser knows no such method); the LIST routes stay out of the OpenAPI schema, which
has no such operation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.api.openapi import TOKEN_REQUIRED, vault_errors
from strongroom.api.routes.secrets import MAX_VERSION
from strongroom.api.services import authorized
from strongroom.api.vault_route import VaultRoute, vault_no_content, vault_response
from strongroom.errors import InvalidRequestError
from strongroom.vault.errors import UnsupportedOperationError
from strongroom.vault.schemas import (
    KvKeysResponse,
    KvMetadataResponse,
    KvMountResponse,
    KvSecretResponse,
    KvVersionResponse,
)

router = APIRouter(tags=["vault"], route_class=VaultRoute)

_DATA = "/v1/secret/data/{path:path}"
_METADATA = "/v1/secret/metadata/{path:path}"
_WRITE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "object"},
                    "options": {
                        "type": "object",
                        "properties": {"cas": {"type": "integer", "minimum": 0}},
                    },
                },
            }
        }
    },
}


# Read from the request by hand (see _version and _listing); declared for the schema.
_VERSION_PARAMETER = {
    "name": "version",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
    "description": "the version to read; 0 or absent: the current one",
}
_LIST_PARAMETER = {
    "name": "list",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["true", "false"]},
    "description": "true: list the keys below the path instead",
}


def _version(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None or raw == "0":  # Vault reads version 0 as "the current one"
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION:
        raise InvalidRequestError(f"version must be a whole number from 0 to {MAX_VERSION}")
    return int(raw)


def _listing(request: Request) -> bool:
    return request.query_params.get("list", "").lower() == "true"


@router.get(
    _DATA,
    summary="Vault KV v2: read a secret (?version=N)",
    response_model=KvSecretResponse,
    responses=vault_errors(400, 403, 404, 503),
    openapi_extra={**TOKEN_REQUIRED, "parameters": [_VERSION_PARAMETER]},
)
async def vault_kv_read(request: Request, path: str) -> Response:
    services, context, caller = await authorized(request, "secret.read")
    data = await services.vault.kv_read(caller, path, _version(request), context)
    return vault_response(request, data=data)


_WRITE: dict[str, Any] = {
    "summary": "Vault KV v2: write a new version (options.cas: check-and-set)",
    "response_model": KvVersionResponse,
    "responses": vault_errors(400, 403, 404, 413, 503),
    "openapi_extra": {**TOKEN_REQUIRED, "requestBody": _WRITE_BODY},
}


@router.post(_DATA, **_WRITE)
@router.put(_DATA, **_WRITE)
async def vault_kv_write(request: Request, path: str) -> Response:
    services, context, caller = await authorized(request, "secret.write")
    raw = await request.body()
    data = await services.work.run(services.vault.kv_write, caller, path, raw, context)
    return vault_response(request, data=data)


async def _list(request: Request, path: str) -> Response:
    services, context, caller = await authorized(request, "item.list")
    return vault_response(
        request, data=await services.work.run(services.vault.kv_list, caller, path, context)
    )


@router.api_route(_METADATA, methods=["LIST"], include_in_schema=False)
async def vault_kv_list(request: Request, path: str) -> Response:
    return await _list(request, path)


@router.api_route("/v1/secret/metadata", methods=["LIST"], include_in_schema=False)
async def vault_kv_list_root(request: Request) -> Response:
    return await _list(request, "")


@router.get(
    "/v1/secret/metadata",
    summary="Vault KV v2: ?list=true lists the mount's root",
    response_model=KvKeysResponse,
    responses=vault_errors(403, 404, 405, 503),
    openapi_extra={**TOKEN_REQUIRED, "parameters": [_LIST_PARAMETER]},
)
async def vault_kv_root(request: Request) -> Response:
    if not _listing(request):
        raise UnsupportedOperationError(reason="GET of the metadata root without list=true")
    return await _list(request, "")


@router.get(
    _METADATA,
    summary="Vault KV v2: a secret's metadata, or ?list=true lists a folder",
    response_model=KvMetadataResponse,
    responses=vault_errors(400, 403, 404, 503),
    openapi_extra={**TOKEN_REQUIRED, "parameters": [_LIST_PARAMETER]},
)
async def vault_kv_metadata(request: Request, path: str) -> Response:
    if _listing(request):
        return await _list(request, path)
    services, context, caller = await authorized(request, "secret.versions")
    return vault_response(
        request, data=await services.work.run(services.vault.kv_metadata, caller, path, context)
    )


@router.delete(
    _METADATA,
    status_code=204,
    summary="Vault KV v2: delete a secret, all versions",
    responses=vault_errors(400, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def vault_kv_delete(request: Request, path: str) -> Response:
    services, context, caller = await authorized(request, "secret.delete")
    await services.work.run(services.vault.kv_delete, caller, path, context)
    return vault_no_content()


@router.get(
    "/v1/sys/internal/ui/mounts/{path:path}",
    summary="Vault: the mount that serves a path (the KV preflight of CLIs and agents)",
    response_model=KvMountResponse,
    responses=vault_errors(403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def vault_mount(request: Request, path: str) -> Response:
    services, _event, _caller = await authorized(request, "vault.mount.read")
    return vault_response(request, data=services.vault.mount(path))


@router.delete(_DATA, include_in_schema=False)
async def vault_kv_soft_delete(request: Request, path: str) -> Response:
    # Vault's soft delete (undeletable, the newest version hidden) has no counterpart here;
    # removing the newest version instead would bring back the one before it.
    raise UnsupportedOperationError(
        "soft delete of versions is not supported; DELETE /v1/secret/metadata/<path> "
        "deletes a secret and all its versions"
    )
