"""Access roles, rules and associations (SPEC sections 4 and 5)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.api.openapi import TOKEN_REQUIRED, errors
from strongroom.api.services import authorized, json_response
from strongroom.roles.schemas import (
    AssociationCreate,
    AssociationCreated,
    RoleCreate,
    RoleCreated,
    RoleDetail,
    RoleList,
    RuleUpdate,
    RuleWritten,
)

router = APIRouter(tags=["roles"])


@router.post(
    "/v1/roles",
    status_code=201,
    summary="Create an access role",
    response_model=RoleCreated,
    responses=errors(400, 401, 403, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def create_role(request: Request, body: RoleCreate) -> Response:
    services, context, caller = await authorized(request, "role.create")
    return json_response(await services.work.run(services.roles.create, caller, body, context), 201)


@router.get(
    "/v1/roles",
    summary="List the roles the caller may list",
    response_model=RoleList,
    responses=errors(401, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def list_roles(request: Request) -> Response:
    services, context, caller = await authorized(request, "role.list")
    return json_response(await services.work.run(services.roles.list, caller, context))


@router.get(
    "/v1/roles/{name}",
    summary="Show a role with its rules and associations",
    response_model=RoleDetail,
    responses=errors(400, 401, 403, 404, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def get_role(request: Request, name: str) -> Response:
    services, context, caller = await authorized(request, "role.read")
    return json_response(await services.work.run(services.roles.get, caller, name, context))


@router.delete(
    "/v1/roles/{name}",
    status_code=204,
    summary="Delete a role",
    responses=errors(400, 401, 403, 404, 409, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def delete_role(request: Request, name: str) -> Response:
    """Needs role-rule ``delete``. The role's deny rules go with it: each must be one the caller
    could lift (it holds every capability on every path the deny covers, until it lapses)."""
    services, context, caller = await authorized(request, "role.delete")
    await services.work.run_async(services.roles.delete, caller, name, context)
    return Response(status_code=204)


@router.put(
    "/v1/roles/{name}/rules",
    summary="Set a rule (replaces the same type and path)",
    response_model=RuleWritten,
    responses=errors(400, 401, 403, 404, 409, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def set_rule(request: Request, name: str, body: RuleUpdate) -> Response:
    """Needs role-rule ``update``. The caller must hold each capability on every path the rule
    can match, for as long as the rule lasts; replacing a deny (or shortening it) must be a
    lift the caller could make. 400 ``RuleTooComplex`` if that cannot be decided within the
    check's budget."""
    services, context, caller = await authorized(request, "role.rule.set")
    return json_response(
        await services.work.run_async(services.roles.set_rule, caller, name, body, context)
    )


@router.delete(
    "/v1/roles/{name}/rules",
    status_code=204,
    summary="Remove a rule",
    responses=errors(400, 401, 403, 404, 409, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def delete_rule(
    request: Request,
    name: str,
    path: str = Query(max_length=600),
    rule_type: str = Query(default="item-rule", max_length=32),
) -> Response:
    """Needs role-rule ``update``; removing a deny, only where the caller could lift it."""
    services, context, caller = await authorized(request, "role.rule.delete")
    await services.work.run_async(
        services.roles.delete_rule, caller, name, rule_type, path, context
    )
    return Response(status_code=204)


@router.post(
    "/v1/roles/{name}/associations",
    status_code=201,
    summary="Associate an auth method",
    response_model=AssociationCreated,
    responses=errors(400, 401, 403, 404, 413, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def associate(request: Request, name: str, body: AssociationCreate) -> Response:
    """Needs role-rule ``update``, ``read`` on the auth method, and every grant of the role
    (whoever logs in through the method receives them)."""
    services, context, caller = await authorized(request, "role.associate")
    created = await services.work.run_async(services.roles.associate, caller, name, body, context)
    return json_response(created, 201)


@router.delete(
    "/v1/roles/{name}/associations/{assoc_id}",
    status_code=204,
    summary="Remove an association (revokes the tokens that carry it)",
    responses=errors(400, 401, 403, 404, 409, 503),
    openapi_extra=TOKEN_REQUIRED,
)
async def dissociate(request: Request, name: str, assoc_id: str) -> Response:
    """Needs role-rule ``update``; if the role holds denies, each must be one the caller could
    lift (the method's logins lose them)."""
    services, context, caller = await authorized(request, "role.dissociate")
    await services.work.run_async(services.roles.dissociate, caller, name, assoc_id, context)
    return Response(status_code=204)
