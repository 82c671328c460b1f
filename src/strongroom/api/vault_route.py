"""How the Vault-compatible routes answer (SPEC section 10): Vault's envelope, Vault's errors.

:class:`VaultRoute` is the route class of ``api/routes/vault_*.py``: a failure inside one of
them leaves as ``{"errors": ["…"]}`` with Vault's status (:mod:`strongroom.vault.errors`), its
precise reason noted in the request's audit event, as the native error handler does.
:func:`vault_response` wraps a result in the envelope Vault clients parse
(``request_id``, ``lease_id``, ``renewable``, ``lease_duration``, ``data``, ``wrap_info``,
``warnings``, ``auth``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Scope

from strongroom.api.errors import note_reason
from strongroom.audit.event import AuditEvent, outcome_for_status
from strongroom.errors import InvalidRequestError, StrongroomError
from strongroom.kit.validation import describe_validation_errors
from strongroom.vault.errors import vault_error
from strongroom.vault.schemas import VaultAuth


def vault_response(
    request: Request,
    *,
    data: BaseModel | None = None,
    auth: VaultAuth | None = None,
    status: int = 200,
) -> Response:
    """Vault's response envelope around ``data`` or ``auth``: each a response model, written
    as ``api/services.json_response`` writes one (the fields it was given)."""
    body = {
        "request_id": request.scope.get("state", {}).get("request_id", ""),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": _plain(data),
        "wrap_info": None,
        "warnings": None,
        "auth": _plain(auth),
    }
    # Cache-Control: no-store, as on every response, comes from the request envelope
    # (api/middleware.py); a second one here would repeat the header.
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _plain(model: BaseModel | None) -> dict[str, Any] | None:
    # Python values, not JSON text: orjson writes the envelope and whatever a secret's data
    # holds exactly as it did before these were models (a Timestamp is its text either way).
    return None if model is None else model.model_dump(exclude_unset=True)


def vault_no_content() -> Response:
    return Response(status_code=204)


def vault_error_response(scope: Scope, exc: StrongroomError) -> Response:
    """Vault's answer to ``exc``; the audit event keeps its reason, and its outcome as the
    native answer's status gives it (a failed login is "denied" though Vault says 400)."""
    answer = vault_error(exc)
    note_reason(scope, exc.reason)
    event: AuditEvent | None = scope.get("state", {}).get("audit")
    if event is not None and not event.outcome:
        event.outcome = outcome_for_status(exc.status)
    return Response(
        orjson.dumps(answer.body()),
        status_code=answer.status,
        media_type="application/json",
        headers=answer.headers,
    )


class VaultRoute(APIRoute):
    """An APIRoute whose failures are answered in Vault's shape (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def vault_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except StrongroomError as exc:
                return vault_error_response(request.scope, exc)
            except RequestValidationError as exc:
                message = describe_validation_errors(list(exc.errors()))
                return vault_error_response(request.scope, InvalidRequestError(message))

        return vault_handler
