"""The checks at the door of every console route: a session, and for a POST its CSRF token."""

from __future__ import annotations

from fastapi import Request

from strongroom.web.csrf import CSRF_FIELD, verify_csrf
from strongroom.web.form import Form
from strongroom.web.session import Session, current_session


async def signed_in(request: Request) -> Session:
    """The request's session; raise SignInRequiredError (a redirect) when there is none."""
    return await current_session(request)


async def signed_in_post(request: Request) -> tuple[Session, Form]:
    """The session and the form of a POST; raise CsrfRejected (403) without a valid token."""
    session = await current_session(request)
    form = await Form.read(request)
    # Cross-site request forgery: the form must carry this session's CSRF token.
    verify_csrf(session.csrf, form.raw(CSRF_FIELD))
    return session, form
