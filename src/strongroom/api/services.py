"""The services one app instance runs with, built once by ``create_app`` and shared by the REST
routes and the console. This is also the one place that reads the Authorization header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter
from strongroom.auth.service import LoginService
from strongroom.auth.tokens import Caller, TokenService
from strongroom.auth_methods.service import AuthMethodService
from strongroom.config import Settings
from strongroom.db.engine import Database
from strongroom.db.keys import Keys
from strongroom.errors import UnauthorizedError
from strongroom.kit.clock import Clock
from strongroom.roles.service import RoleService
from strongroom.secrets.service import SecretService


@dataclass
class Services:
    settings: Settings
    database: Database
    keys: Keys
    writer: AuditWriter
    tokens: TokenService
    auth_methods: AuthMethodService
    roles: RoleService
    secrets: SecretService
    login: LoginService
    clock: Clock

    def authenticate(self, token: str, event: AuditEvent) -> Caller:
        """Resolve the bearer token and note who is calling in the request's audit event."""
        caller = self.tokens.resolve(token, event.time)
        event.access_id = caller.access_id
        event.auth_method = caller.auth_method_name
        event.identity_arn = caller.identity_arn
        event.token_digest = caller.token_digest
        return caller


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def audit_event_of(request: Request) -> AuditEvent:
    event: AuditEvent = request.scope["state"]["audit"]
    return event


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer t-…``; UnauthorizedError when absent or malformed."""
    header = request.headers.get("authorization")
    if not header:
        raise UnauthorizedError("send Authorization: Bearer <token>; log in first")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("send Authorization: Bearer <token>")
    return token.strip()


def authorized(request: Request, action: str) -> tuple[Services, AuditEvent, Caller]:
    """Start an authenticated endpoint: its services, its audit event (named ``action``) and
    the caller behind the bearer token (UnauthorizedError without a valid one)."""
    event = audit_event_of(request)
    event.action = action
    services = services_of(request)
    return services, event, services.authenticate(bearer_token(request), event)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")
