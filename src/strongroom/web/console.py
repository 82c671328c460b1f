"""``install_console(app)``: the web console's routes and static files.

The console is a set of server-rendered pages under ``/ui/`` over the same domain services as
the REST API: every page calls ``services.<domain>`` with the signed-in caller and the
request's audit event, so rules, validation and auditing are the API's own. Its modules:

    session.py     the session cookie (the login token) and its resolution to a Caller
    csrf.py        CSRF tokens: HMAC of the session, or of a pre-session nonce at sign-in
    guard.py       the door of every route: a session, and for a POST its CSRF token
    form.py        form fields → the API's schemas; errors placed beside their fields
    rendering.py   the Jinja2 environment and the page context
    handling.py    ConsoleRoute: failures become pages with the right status
    headers.py     CSP, nosniff, no-referrer, no-store on every /ui (and /docs) response
    routes/        one module per section: sign-in, auth methods, roles, secrets, audit
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from strongroom.web.rendering import STATIC_PREFIX
from strongroom.web.routes import audit, auth_methods, home, roles, secrets, sign_in

STATIC_DIRECTORY = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    """Mount the console on ``app``: static files, pages, then the catch-all 404 page.

    Its security headers are middleware (``web/headers.py``), which ``create_app`` puts in
    front of everything else, so that they also cover the envelope's own answers.
    """
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIRECTORY), name="console-static")
    for module in (home, sign_in, auth_methods, roles, secrets, audit):
        app.include_router(module.router, include_in_schema=False)
    # Last: it answers every console path that no page claimed.
    app.include_router(home.fallback, include_in_schema=False)
