"""Auth methods: list, create (AWS IAM or API key), show, edit, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.api.services import request_context, services_of
from strongroom.auth_methods.schemas import (
    ApiKeyAuthMethodCreate,
    AuthMethodUpdate,
    AwsIamAuthMethodCreate,
)
from strongroom.errors import NotFoundError, StrongroomError
from strongroom.web.form import Form, InvalidFormError, service_form_errors, validate
from strongroom.web.guard import signed_in, signed_in_post
from strongroom.web.handling import ConsoleRoute, note_reason
from strongroom.web.rendering import as_body, link, render

router = APIRouter(route_class=ConsoleRoute)
SECTION = "auth-methods"

# The URL segment of each kind, and the API's type name.
KINDS = {"aws-iam": "aws_iam", "api-key": "api_key"}
AWS_LIST_FIELDS = (
    "bound_aws_account_id",
    "bound_role_name",
    "bound_arn",
    "bound_role_id",
    "bound_resource_id",
    "bound_user_name",
    "bound_user_id",
)
COMMON_FIELDS = ("description", "jwt_ttl", "access_expires", "bound_ips")
FORM_FIELDS = ("name", "sts_url", *AWS_LIST_FIELDS, *COMMON_FIELDS)
# Where a service's message about a form belongs (fragments in lower case).
HINTS = (
    ("sts", "sts_url"),
    ("already exists", "name"),
    ("auth method name", "name"),
    ("bound_aws_account_id", "bound_aws_account_id"),
    ("account id", "bound_aws_account_id"),
    ("cidr", "bound_ips"),
)
NOTICES = {"saved": "Changes saved.", "deleted": "Auth method deleted."}


def _kind(segment: str) -> str:
    kind = KINDS.get(segment)
    if kind is None:
        raise NotFoundError("there is no such kind of auth method")
    return kind


def _fields_from_form(form: Form, kind: str, *, for_update: bool) -> dict[str, Any]:
    """The API body for ``kind`` from the form: lists split on commas or lines."""
    data: dict[str, Any] = {
        "description": form.text("description"),
        "bound_ips": form.split("bound_ips"),
    }
    for optional in ("jwt_ttl", "access_expires"):
        value = form.optional(optional)
        # On an update an emptied field clears the setting; on a create it is left out.
        if value is not None or for_update:
            data[optional] = value
    if kind == "aws_iam":
        for name in AWS_LIST_FIELDS:
            data[name] = form.split(name)
        if form.text("sts_url"):
            data["sts_url"] = form.text("sts_url")
    return data


def _form_page(
    request: Request,
    kind: str,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    editing: str | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "auth_method_form.html",
        {"kind": kind, "values": values, "errors": errors or {}, "editing": editing},
        status=status,
        section=SECTION,
    )


@router.get("/ui/auth-methods", summary="Console: auth methods")
async def list_page(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.list"
    session = await signed_in(request)
    methods = [
        as_body(m)
        for m in (
            await services.work.run(services.auth_methods.list, session.caller, context)
        ).auth_methods
    ]
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    return render(
        request, "auth_methods.html", {"methods": methods, "notice": notice}, section=SECTION
    )


@router.get("/ui/auth-methods/new", summary="Console: choose the kind of a new auth method")
async def choose_kind(request: Request) -> Response:
    await signed_in(request)
    return render(request, "auth_method_kind.html", section=SECTION)


@router.get("/ui/auth-methods/new/{segment}", summary="Console: new auth method form")
async def create_form(request: Request, segment: str) -> Response:
    kind = _kind(segment)
    await signed_in(request)
    values = {"sts_url": "https://sts.amazonaws.com"} if kind == "aws_iam" else {}
    return _form_page(request, kind, values=values)


@router.post("/ui/auth-methods/new/{segment}", summary="Console: create an auth method")
async def create(request: Request, segment: str) -> Response:
    kind = _kind(segment)
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.create"
    session, form = await signed_in_post(request)
    data = {
        "type": kind,
        "name": form.text("name"),
        **_fields_from_form(form, kind, for_update=False),
    }
    try:
        body: AwsIamAuthMethodCreate | ApiKeyAuthMethodCreate
        if kind == "aws_iam":
            body = validate(AwsIamAuthMethodCreate, data)
        else:
            body = validate(ApiKeyAuthMethodCreate, data)
        created = await services.work.run(
            services.auth_methods.create, session.caller, body, context
        )
    except InvalidFormError as failure:
        return _failed(request, kind, form, failure)
    except StrongroomError as exc:
        return _failed(request, kind, form, service_form_errors(exc, HINTS))
    return render(
        request, "auth_method_created.html", {"created": as_body(created)}, section=SECTION
    )


def _failed(
    request: Request, kind: str, form: Form, failure: InvalidFormError, editing: str | None = None
) -> Response:
    note_reason(request, failure.reason)
    values = {name: form.raw(name) for name in FORM_FIELDS}
    return _form_page(
        request, kind, values=values, errors=failure.errors, editing=editing, status=failure.status
    )


@router.get("/ui/auth-methods/{name}", summary="Console: an auth method")
async def show(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.read"
    session = await signed_in(request)
    method = as_body(
        await services.work.run(services.auth_methods.get, session.caller, name, context)
    )
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    return render(
        request, "auth_method.html", {"method": method, "notice": notice}, section=SECTION
    )


@router.get("/ui/auth-methods/{name}/edit", summary="Console: edit an auth method")
async def edit_form(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.read"
    session = await signed_in(request)
    method = as_body(
        await services.work.run(services.auth_methods.get, session.caller, name, context)
    )
    return _form_page(request, str(method["type"]), values=method, editing=name)


@router.post("/ui/auth-methods/{name}/edit", summary="Console: change an auth method")
async def edit(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.update"
    session, form = await signed_in_post(request)
    kind = "aws_iam" if form.text("kind") == "aws_iam" else "api_key"
    try:
        patch = validate(AuthMethodUpdate, _fields_from_form(form, kind, for_update=True))
        await services.work.run_async(
            services.auth_methods.update, session.caller, name, patch, context
        )
    except InvalidFormError as failure:
        return _failed(request, kind, form, failure, editing=name)
    except StrongroomError as exc:
        return _failed(request, kind, form, service_form_errors(exc, HINTS), editing=name)
    return RedirectResponse(link(f"/ui/auth-methods/{name}", notice="saved"), status_code=303)


@router.post("/ui/auth-methods/{name}/delete", summary="Console: delete an auth method")
async def delete(request: Request, name: str) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth_method.delete"
    session, _form = await signed_in_post(request)
    await services.work.run(services.auth_methods.delete, session.caller, name, context)
    return RedirectResponse("/ui/auth-methods?notice=deleted", status_code=303)
