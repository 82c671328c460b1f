"""Secrets: folder browser, create, view with an explicit reveal, new version, delete.

A secret's value reaches the page only in answer to a POST to ``/ui/secrets/reveal`` (CSRF
checked, audited as ``secret.read``); the item page itself shows metadata and versions only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.api.services import request_context, services_of
from strongroom.errors import ForbiddenError, NotFoundError, StrongroomError
from strongroom.kit.names import normalize_folder_path, normalize_item_path
from strongroom.rbac import Capability
from strongroom.secrets.schemas import Secret, SecretCreate, SecretUpdate, SecretVersion
from strongroom.web.form import Form, InvalidFormError, service_form_errors, validate
from strongroom.web.guard import signed_in, signed_in_post
from strongroom.web.handling import ConsoleRoute, note_reason
from strongroom.web.rendering import link, render
from strongroom.web.session import Session

router = APIRouter(route_class=ConsoleRoute)
SECTION = "secrets"

NOTICES = {
    "created": "Secret created.",
    "saved": "New version saved.",
    "deleted": "Secret deleted.",
    "version-deleted": "Version deleted.",
}
CREATE_HINTS = (
    ("already exists", "name"),
    ("item name", "name"),
    ("value", "value"),
)
UPDATE_HINTS = (("value", "value"), ("expected version", "value"))


def _notice(request: Request) -> str:
    return NOTICES.get(request.query_params.get("notice", ""), "")


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """``(label, folder path)`` from the root down to ``folder``."""
    crumbs = [("/", "/")]
    path = ""
    for segment in folder.strip("/").split("/"):
        if segment:
            path += "/" + segment
            crumbs.append((segment, path))
    return crumbs


def folder_of(name: str) -> str:
    return name.rsplit("/", 1)[0] or "/"


def _version(text: str) -> int | None:
    """A version number from a form, or None; anything else is an InvalidFormError."""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 2**31:
        raise InvalidFormError({"version": "A version is a whole number from 1."}, 400, text[:40])
    return int(text)


@router.get("/ui/secrets", summary="Console: the folder browser")
async def browse(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "item.list"
    session = await signed_in(request)
    listing = await services.work.run(
        services.secrets.list,
        session.caller,
        request.query_params.get("path", "/")[:600],
        False,
        context,
    )
    return render(
        request,
        "secrets.html",
        {
            "listing": listing,
            "crumbs": breadcrumbs(listing.path),
            "notice": _notice(request),
        },
        section=SECTION,
    )


@router.get("/ui/secrets/new", summary="Console: new secret form")
async def create_form(request: Request) -> Response:
    await signed_in(request)
    folder = normalize_folder_path(request.query_params.get("path", "/")[:600])
    prefix = "/" if folder == "/" else folder + "/"
    return render(request, "secret_new.html", {"values": {"name": prefix}}, section=SECTION)


@router.post("/ui/secrets/new", summary="Console: create a secret")
async def create(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "secret.create"
    session, form = await signed_in_post(request)
    data = {
        "name": form.text("name"),
        "value": form.raw("value"),
        "description": form.text("description"),
        "tags": form.split("tags"),
    }
    try:
        body = validate(SecretCreate, data)
        created = await services.work.run(services.secrets.create, session.caller, body, context)
    except InvalidFormError as failure:
        return _create_failed(request, form, failure)
    except StrongroomError as exc:
        return _create_failed(request, form, service_form_errors(exc, CREATE_HINTS))
    return RedirectResponse(
        link("/ui/secrets/item", name=created.name, notice="created"), status_code=303
    )


def _create_failed(request: Request, form: Form, failure: InvalidFormError) -> Response:
    note_reason(request, failure.reason)
    values = {name: form.raw(name) for name in ("name", "description", "tags")}
    if failure.status != 413:
        values["value"] = form.raw("value")
    return render(
        request,
        "secret_new.html",
        {"values": values, "errors": failure.errors},
        status=failure.status,
        section=SECTION,
    )


async def _item_page(
    request: Request,
    session: Session,
    unverified_name: str,
    *,
    revealed: Secret | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """An item's metadata and versions; its value only as ``revealed``.

    Raises ForbiddenError (403, nothing shown) unless the caller may at least list the item.
    """
    services = services_of(request)
    context = request_context(request)
    name = normalize_item_path(unverified_name)
    item = await services.work.run(services.secrets.describe, session.caller, name, context)
    versions: list[SecretVersion] | None = None
    if Capability.READ in item.permissions:
        versions = (
            await services.work.run(services.secrets.versions, session.caller, name, context)
        ).versions
    return render(
        request,
        "secret.html",
        {
            "item": item,
            "versions": versions,
            "revealed": revealed,
            "errors": errors or {},
            "crumbs": breadcrumbs(folder_of(name)),
            "notice": _notice(request),
        },
        status=status,
        section=SECTION,
    )


@router.get("/ui/secrets/item", summary="Console: a secret (without its value)")
async def show(request: Request) -> Response:
    context = request_context(request)
    context.event.action = "item.describe"
    session = await signed_in(request)
    return await _item_page(request, session, request.query_params.get("name", "")[:600])


@router.post("/ui/secrets/reveal", summary="Console: reveal a secret's value")
async def reveal(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    session, form = await signed_in_post(request)
    name = form.text("name")
    version = _version(form.text("version"))
    secret = await services.secrets.read(session.caller, name, version, context)
    response = await _item_page(request, session, name, revealed=secret)
    # After the page's own look-ups, so that the audit trail records the read.
    context.event.action = "secret.read"
    context.event.path = secret.name
    return response


@router.post("/ui/secrets/update", summary="Console: write a new version")
async def update(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "secret.update"
    session, form = await signed_in_post(request)
    name = form.text("name")
    try:
        expected = _version(form.text("expected_version"))
        data: dict[str, Any] = {"value": form.raw("value"), "expected_version": expected}
        body = validate(SecretUpdate, data)
        await services.work.run(services.secrets.update, session.caller, name, body, context)
    except InvalidFormError as failure:
        note_reason(request, failure.reason)
        return await _item_page(
            request, session, name, errors=failure.errors, status=failure.status
        )
    except StrongroomError as exc:
        if isinstance(exc, ForbiddenError | NotFoundError):
            raise
        rejected = service_form_errors(exc, UPDATE_HINTS)
        note_reason(request, rejected.reason)
        return await _item_page(
            request, session, name, errors=rejected.errors, status=rejected.status
        )
    return RedirectResponse(
        link("/ui/secrets/item", name=normalize_item_path(name), notice="saved"), status_code=303
    )


@router.post("/ui/secrets/delete", summary="Console: delete a secret or one version")
async def delete(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "secret.delete"
    session, form = await signed_in_post(request)
    name = form.text("name")
    version = _version(form.text("version"))
    await services.work.run(services.secrets.delete, session.caller, name, version, context)
    name = normalize_item_path(name)
    if version is not None:
        try:
            await services.work.run(services.secrets.describe, session.caller, name, context)
        except NotFoundError:
            pass  # that was the last version: the item went with it
        else:
            return RedirectResponse(
                link("/ui/secrets/item", name=name, notice="version-deleted"), status_code=303
            )
    return RedirectResponse(
        link("/ui/secrets", path=folder_of(name), notice="deleted"), status_code=303
    )
