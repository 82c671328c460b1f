"""Access roles: list, create, a role's page (rules and associations), delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.api.services import request_context, services_of
from strongroom.errors import ForbiddenError, StrongroomError
from strongroom.rbac import Capability, RuleType
from strongroom.roles.schemas import AssociationCreate, RoleCreate, RuleUpdate
from strongroom.web.form import InvalidFormError, service_form_errors, validate
from strongroom.web.guard import signed_in, signed_in_post
from strongroom.web.handling import ConsoleRoute, note_reason
from strongroom.web.rendering import as_body, link, render
from strongroom.web.session import Session

router = APIRouter(route_class=ConsoleRoute)
SECTION = "roles"

RULE_TYPES = [rule_type.value for rule_type in RuleType]
CAPABILITIES = [capability.value for capability in Capability]
NOTICES = {
    "created": "Role created.",
    "deleted": "Role deleted.",
    "rule-set": "Rule saved.",
    "rule-deleted": "Rule removed.",
    "associated": "Auth method associated.",
    "dissociated": "Association removed.",
}
ROLE_HINTS = (("already exists", "name"), ("role name", "name"))
RULE_HINTS = (
    ("rule_type", "rule_type"),
    ("capabilit", "capabilities"),
    ("you can grant only", "capabilities"),
    ("path", "path"),
)
ASSOCIATION_HINTS = (("auth method", "auth_method"), ("claim", "sub_claims"))


def _notice(request: Request) -> str:
    return NOTICES.get(request.query_params.get("notice", ""), "")


@router.get("/ui/roles", summary="Console: access roles")
async def list_page(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.list"
    session = await signed_in(request)
    roles = (await services.work.run(services.roles.list, session.caller, context)).roles
    return render(
        request, "roles.html", {"roles": roles, "notice": _notice(request)}, section=SECTION
    )


@router.get("/ui/roles/new", summary="Console: new role form")
async def create_form(request: Request) -> Response:
    await signed_in(request)
    return render(request, "role_new.html", section=SECTION)


@router.post("/ui/roles/new", summary="Console: create a role")
async def create(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.create"
    session, form = await signed_in_post(request)
    data = {"name": form.text("name"), "description": form.text("description")}
    try:
        body = validate(RoleCreate, data)
        await services.work.run(services.roles.create, session.caller, body, context)
    except InvalidFormError as failure:
        return _role_form_failed(request, data, failure)
    except StrongroomError as exc:
        return _role_form_failed(request, data, service_form_errors(exc, ROLE_HINTS))
    return RedirectResponse(link(f"/ui/roles/{body.name}", notice="created"), status_code=303)


def _role_form_failed(
    request: Request, data: dict[str, Any], failure: InvalidFormError
) -> Response:
    note_reason(request, failure.reason)
    return render(
        request,
        "role_new.html",
        {"values": data, "errors": failure.errors},
        status=failure.status,
        section=SECTION,
    )


async def _role_page(
    request: Request,
    session: Session,
    name: str,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    """A role with its rules and associations, and the forms to change them.

    Raises ForbiddenError (403, nothing shown) unless the caller may read the role.
    """
    services = services_of(request)
    context = request_context(request)
    role = await services.work.run(services.roles.get, session.caller, name, context)
    # Only the auth methods the caller may list are offered for association.
    methods = [
        as_body(m)
        for m in (
            await services.work.run(services.auth_methods.list, session.caller, context)
        ).auth_methods
    ]
    return render(
        request,
        "role.html",
        {
            "role": role,
            "methods": methods,
            "rule_types": RULE_TYPES,
            "capabilities": CAPABILITIES,
            "form_errors": errors or {},
            "form_values": values or {},
            "notice": _notice(request),
        },
        status=status,
        section=SECTION,
    )


@router.get("/ui/roles/{name}", summary="Console: a role")
async def show(request: Request, name: str) -> Response:
    context = request_context(request)
    context.event.action = "role.read"
    session = await signed_in(request)
    return await _role_page(request, session, name)


async def _failed_on_role_page(
    request: Request,
    session: Session,
    name: str,
    form_name: str,
    values: dict[str, Any],
    failure: InvalidFormError,
) -> Response:
    note_reason(request, failure.reason)
    try:
        return await _role_page(
            request,
            session,
            name,
            errors={form_name: failure.errors},
            values={form_name: values},
            status=failure.status,
        )
    except ForbiddenError:
        # The role itself is out of reach: say no more than that.
        raise ForbiddenError(reason=failure.reason) from None


@router.post("/ui/roles/{name}/rules", summary="Console: set a rule")
async def set_rule(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.rule.set"
    session, form = await signed_in_post(request)
    data: dict[str, Any] = {
        "rule_type": form.text("rule_type") or "item-rule",
        "path": form.text("path"),
        "capabilities": form.texts("capabilities"),
    }
    if form.text("ttl"):
        data["ttl"] = form.text("ttl")
    try:
        if not data["capabilities"]:
            raise InvalidFormError(
                {"capabilities": "Choose at least one capability."}, 400, "no capability chosen"
            )
        body = validate(RuleUpdate, data)
        await services.work.run_async(services.roles.set_rule, session.caller, name, body, context)
    except InvalidFormError as failure:
        return await _failed_on_role_page(request, session, name, "rule", data, failure)
    except StrongroomError as exc:
        rejected = service_form_errors(exc, RULE_HINTS)
        return await _failed_on_role_page(request, session, name, "rule", data, rejected)
    return RedirectResponse(link(f"/ui/roles/{name}", notice="rule-set"), status_code=303)


@router.post("/ui/roles/{name}/rules/delete", summary="Console: remove a rule")
async def delete_rule(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.rule.delete"
    session, form = await signed_in_post(request)
    await services.work.run_async(
        services.roles.delete_rule,
        session.caller,
        name,
        form.text("rule_type"),
        form.text("path"),
        context,
    )
    return RedirectResponse(link(f"/ui/roles/{name}", notice="rule-deleted"), status_code=303)


def parse_sub_claims(text: str) -> dict[str, list[str]]:
    """``claim=value[,value]`` per line (or ``;``-separated) into the API's sub_claims."""
    claims: dict[str, list[str]] = {}
    for line in text.replace(";", "\n").splitlines():
        if not line.strip():
            continue
        key, sep, values = line.partition("=")
        if not sep or not key.strip():
            raise InvalidFormError(
                {"sub_claims": "Write one claim per line as claim=value[,value…]."},
                400,
                "malformed sub-claims",
            )
        claims.setdefault(key.strip(), []).extend(
            part.strip() for part in values.split(",") if part.strip()
        )
    return claims


@router.post("/ui/roles/{name}/associations", summary="Console: associate an auth method")
async def associate(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.associate"
    session, form = await signed_in_post(request)
    values = {"auth_method": form.text("auth_method"), "sub_claims": form.raw("sub_claims")}
    try:
        if not values["auth_method"]:
            raise InvalidFormError(
                {"auth_method": "Choose an auth method."}, 400, "no auth method chosen"
            )
        body = validate(
            AssociationCreate,
            {
                "auth_method": values["auth_method"],
                "sub_claims": parse_sub_claims(values["sub_claims"]),
            },
        )
        await services.work.run_async(services.roles.associate, session.caller, name, body, context)
    except InvalidFormError as failure:
        return await _failed_on_role_page(request, session, name, "association", values, failure)
    except StrongroomError as exc:
        rejected = service_form_errors(exc, ASSOCIATION_HINTS)
        return await _failed_on_role_page(request, session, name, "association", values, rejected)
    return RedirectResponse(link(f"/ui/roles/{name}", notice="associated"), status_code=303)


@router.post(
    "/ui/roles/{name}/associations/{assoc_id}/delete", summary="Console: remove an association"
)
async def dissociate(request: Request, name: str, assoc_id: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.dissociate"
    session, _form = await signed_in_post(request)
    await services.work.run_async(
        services.roles.dissociate, session.caller, name, assoc_id, context
    )
    return RedirectResponse(link(f"/ui/roles/{name}", notice="dissociated"), status_code=303)


@router.post("/ui/roles/{name}/delete", summary="Console: delete a role")
async def delete(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "role.delete"
    session, _form = await signed_in_post(request)
    await services.work.run_async(services.roles.delete, session.caller, name, context)
    return RedirectResponse("/ui/roles?notice=deleted", status_code=303)
