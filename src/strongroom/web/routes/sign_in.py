"""Signing in with an access ID and access key, and signing out (revoking the token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.api.services import audit_event_of, request_context, services_of
from strongroom.auth.schemas import LoginRequest
from strongroom.errors import AuthenticationDenied, RateLimitedError, StrongroomError
from strongroom.request_context import RequestContext
from strongroom.web.csrf import (
    CSRF_FIELD,
    CsrfRejected,
    login_csrf_token,
    new_login_nonce,
    verify_csrf,
)
from strongroom.web.form import FORM_ERROR, Form, InvalidFormError, service_form_errors, validate
from strongroom.web.guard import signed_in_post
from strongroom.web.handling import ConsoleRoute, note_reason
from strongroom.web.rendering import render
from strongroom.web.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SignInRequiredError,
    clear_login_cookie,
    clear_session_cookie,
    cookies_secure,
    current_session,
    safe_next,
    set_login_cookie,
    set_session_cookie,
)

router = APIRouter(route_class=ConsoleRoute)


def _sign_in_page(
    request: Request,
    *,
    next_path: str,
    access_id: str = "",
    errors: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> Response:
    """The sign-in form, bound to a fresh pre-session nonce (see :mod:`strongroom.web.csrf`)."""
    services = services_of(request)
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        {
            "csrf": login_csrf_token(services.keys.digester, nonce),
            "next": next_path,
            "values": {"access_id": access_id},
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
    )
    set_login_cookie(response, nonce, secure=cookies_secure(request))
    return response


@router.get("/ui/login", summary="Console sign-in page")
async def sign_in_form(request: Request) -> Response:
    params = request.query_params
    next_path = safe_next(params.get("next"))
    if request.cookies.get(SESSION_COOKIE):
        try:
            await current_session(request)
        except SignInRequiredError:
            pass
        else:
            return RedirectResponse(next_path, status_code=303)
    notice = ""
    if params.get("expired"):
        notice = "Your session has ended. Sign in again."
    elif params.get("signed_out"):
        notice = "You have signed out."
    return _sign_in_page(request, next_path=next_path, notice=notice)


@router.post("/ui/login", summary="Sign in to the console")
async def sign_in(request: Request) -> Response:
    services = services_of(request)
    event = audit_event_of(request)
    event.action = "auth.login"
    form = await Form.read(request)
    next_path = safe_next(form.text("next"))
    access_id = form.text("access_id")
    try:
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce:
            raise CsrfRejected(reason="sign-in form without its nonce cookie")
        # Login CSRF: a sign-in posted from elsewhere has neither the cookie nor its HMAC.
        verify_csrf(login_csrf_token(services.keys.digester, nonce), form.raw(CSRF_FIELD))
    except CsrfRejected as exc:
        note_reason(request, exc.reason)
        return _sign_in_page(
            request,
            next_path=next_path,
            access_id=access_id,
            errors={FORM_ERROR: "This sign-in form has expired. Please try again."},
            status=403,
        )
    try:
        missing = {
            field: "Required."
            for field, value in (("access_id", access_id), ("access_key", form.raw("access_key")))
            if not value
        }
        if missing:
            raise InvalidFormError(missing, 400, "sign-in form incomplete")
        body = validate(
            LoginRequest,
            {
                "access_id": access_id,
                "access_type": "access_key",
                "access_key": form.raw("access_key"),
            },
        )
        result = await services.login.login(body, RequestContext.of(event))
    except InvalidFormError as exc:
        note_reason(request, exc.reason)
        return _sign_in_page(
            request, next_path=next_path, access_id=access_id, errors=exc.errors, status=exc.status
        )
    except AuthenticationDenied as exc:
        # One message for every failure: which part was wrong stays in the audit trail.
        note_reason(request, exc.reason)
        return _sign_in_page(
            request,
            next_path=next_path,
            access_id=access_id,
            errors={FORM_ERROR: "Access authentication failed: check the access ID and key."},
            status=401,
        )
    except RateLimitedError as exc:
        note_reason(request, exc.reason)
        page = _sign_in_page(
            request,
            next_path=next_path,
            access_id=access_id,
            errors={FORM_ERROR: f"Too many failed attempts. Retry in {exc.retry_after} s."},
            status=exc.status,
        )
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except StrongroomError as exc:
        failure = service_form_errors(exc, {"access_key": "access_key", "access id": "access_id"})
        note_reason(request, exc.reason)
        return _sign_in_page(
            request,
            next_path=next_path,
            access_id=access_id,
            errors=failure.errors,
            status=failure.status,
        )
    secure = cookies_secure(request)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, result.token, result.expires_in, secure=secure)
    clear_login_cookie(response, secure=secure)
    return response


@router.post("/ui/logout", summary="Sign out: revoke the session's token")
async def sign_out(request: Request) -> Response:
    services = services_of(request)
    context = request_context(request)
    context.event.action = "auth.token.revoke"
    session, _form = await signed_in_post(request)
    await services.work.run(services.tokens.revoke_own, session.caller, context, 303)
    response = RedirectResponse("/ui/login?signed_out=1", status_code=303)
    clear_session_cookie(response, secure=cookies_secure(request))
    return response
