"""How console routes end when something goes wrong: as pages, never as JSON or a traceback.

    SignInRequiredError         303 to the sign-in page (back here afterwards, for a GET)
    StrongroomError             its own status (400, 403, 404, 409, 413, 429, 502, 503) and a
                                page with its safe ``message``; 403 shows nothing of the object
    pydantic ValidationError    400 with the API's message
    InvalidFormError            its status, with its messages (a form that has no page of its own)
    Starlette HTTPException     its status (a malformed form body is a 400)

Forms catch their own validation errors first and show them beside the fields; this is the
net below them. The precise ``reason`` goes to the audit event, as with the REST API.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from strongroom.api.errors import note_reason as note_reason_in_scope
from strongroom.errors import (
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    StrongroomError,
)
from strongroom.web.form import InvalidFormError, shown_message, validation_errors
from strongroom.web.rendering import link, render
from strongroom.web.session import SignInRequiredError, clear_session_cookie, cookies_secure

_TITLES = {
    400: "That request is not valid",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    405: "Not found",
    409: "Conflict",
    413: "Too large",
    429: "Too many attempts",
    502: "AWS STS is unavailable",
    503: "Service unavailable",
}


class _PageError(StrongroomError):
    """A failure met outside the domain services (a malformed form body, a form field that
    has no page of its own), shown with the status it was given."""

    def __init__(self, status: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message[:500], reason=reason)
        self.status = status
        self.code = "InvalidRequest" if status == 400 else "Error"


def note_reason(request: Request, reason: str) -> None:
    """Keep the precise cause of a failure for the audit trail (never shown to the user)."""
    note_reason_in_scope(request.scope, reason)


def error_page(request: Request, exc: StrongroomError) -> Response:
    """A friendly page for ``exc`` with its status; a 403 names nothing of what was asked."""
    note_reason(request, exc.reason)
    message = shown_message(exc)
    response = render(
        request,
        "error.html",
        {"status": exc.status, "title": _TITLES.get(exc.status, "Error"), "message": message},
        status=exc.status,
    )
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def sign_in_redirect(request: Request, *, expired: bool) -> Response:
    """303 to the sign-in page; a GET comes back to where it was after signing in."""
    target = None
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(
        link("/ui/login", next=target, expired="1" if expired else None), status_code=303
    )
    if expired:
        clear_session_cookie(response, secure=cookies_secure(request))
    return response


class ConsoleRoute(APIRoute):
    """An APIRoute whose failures become console pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequiredError as exc:
                return sign_in_redirect(request, expired=exc.expired)
            except StrongroomError as exc:
                return error_page(request, exc)
            except InvalidFormError as exc:
                message = "; ".join(exc.errors.values())
                return error_page(request, _PageError(exc.status, message, reason=exc.reason))
            except ValidationError as exc:
                messages = validation_errors(exc)
                text = "; ".join(f"{k}: {v}" if k else v for k, v in messages.items())
                return error_page(request, InvalidRequestError(text[:500]))
            except RequestValidationError:
                return error_page(request, InvalidRequestError("the request is malformed"))
            except StarletteHTTPException as exc:
                if exc.status_code == 404:
                    return error_page(request, NotFoundError("there is no such page"))
                return error_page(request, _PageError(exc.status_code, str(exc.detail)))

        return console_handler
