"""Every error leaves as ``{"error": Code, "message": text}`` with a 4xx or 5xx status.

Validation problems become 400 ``InvalidRequest`` with the first problem spelled out; unknown
routes 404. Under the Vault-compatible paths, routing's answers take Vault's shape instead
(``{"errors": […]}``, :mod:`strongroom.vault.errors`). Anything unexpected is answered with a
bare 500 ``InternalError``: by FastAPI's error middleware for a route FastAPI ran, with the
handler below, else by the request envelope; the traceback goes to the server log (the
envelope's), never to the client.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from strongroom.audit.event import AuditEvent
from strongroom.errors import RateLimitedError, StrongroomError
from strongroom.kit.validation import describe_validation_errors
from strongroom.vault.errors import VAULT_PATH_PREFIXES, vault_http_error

_HTTP_CODES = {
    400: "InvalidRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps({"error": code, "message": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def note_reason(scope: Scope, reason: str) -> None:
    """Keep the precise reason of a failure in the request's audit event (the first one wins)."""
    event: AuditEvent | None = scope.get("state", {}).get("audit")
    if event is not None and not event.reason:
        event.reason = reason[:2000]


def strongroom_error_response(scope: Scope, exc: StrongroomError) -> Response:
    """The answer to ``exc``; its precise reason goes to the request's audit event only."""
    note_reason(scope, exc.reason)
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(exc.status, exc.code, exc.message, headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        # FastAPI's error middleware calls this, answers, then raises the error on to the
        # request envelope, which logs it: the client learns only that it failed.
        note_reason(request.scope, f"internal error: {type(exc).__name__}")
        return error_response(500, "InternalError", "internal error")

    @app.exception_handler(StrongroomError)
    async def _strongroom_error(request: Request, exc: StrongroomError) -> Response:
        return strongroom_error_response(request.scope, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        message = describe_validation_errors(list(exc.errors()))
        note_reason(request.scope, message)
        return error_response(400, "InvalidRequest", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "Error")
        message = str(exc.detail) if exc.status_code != 404 else "no such endpoint"
        note_reason(request.scope, message)
        if request.url.path.startswith(VAULT_PATH_PREFIXES):
            answer = vault_http_error(exc.status_code, message)
            return Response(
                orjson.dumps(answer.body()),
                status_code=answer.status,
                media_type="application/json",
                headers=dict(exc.headers or {}),
            )
        return error_response(exc.status_code, code, message)
