"""The services one app instance runs with, built once by ``create_app`` and shared by the REST
routes and the console. This is also the one place that reads the caller's token from a request
(``Authorization: Bearer`` or Vault's ``X-Vault-Token``).

Routes call the services' synchronous methods through ``services.work`` (``db/work.py``):
inline on SQLite, on a thread with a deadline on PostgreSQL, so that no database round trip
ever runs on the event loop. The reads of the hot path are coroutines of their own
(``db/hot.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from strongroom.audit.event import AuditEvent
from strongroom.audit.service import AuditService
from strongroom.audit.writer import AuditWriter
from strongroom.auth.service import LoginService
from strongroom.auth.tokens import Caller, TokenService
from strongroom.auth_methods.service import AuthMethodService
from strongroom.config import Settings
from strongroom.db.engine import Database
from strongroom.db.keys import Keys
from strongroom.db.live_keys import LiveKeyring
from strongroom.db.work import DatabaseWork
from strongroom.errors import UnauthorizedError
from strongroom.kit.clock import Clock
from strongroom.kit.forwarded import TrustedProxies
from strongroom.request_context import RequestContext
from strongroom.roles.service import RoleService
from strongroom.secrets.service import SecretService
from strongroom.vault.service import VaultService


@dataclass
class Services:
    settings: Settings
    database: Database
    keys: Keys  # as loaded at start
    keyring: LiveKeyring  # the data keys now (they change with `keys rotate`)
    writer: AuditWriter
    tokens: TokenService
    auth_methods: AuthMethodService
    roles: RoleService
    secrets: SecretService
    login: LoginService
    clock: Clock
    work: DatabaseWork

    @cached_property
    def audit(self) -> AuditService:
        """Reading the audit trail (writing it is each change's own, through ``writer``)."""
        return AuditService(self.database, self.writer, self.work)

    @cached_property
    def vault(self) -> VaultService:
        """Vault's operations (SPEC section 10), over the services above."""
        return VaultService(
            database=self.database,
            writer=self.writer,
            login=self.login,
            tokens=self.tokens,
            auth_methods=self.auth_methods,
            secrets=self.secrets,
            work=self.work,
        )

    @cached_property
    def trusted_proxies(self) -> TrustedProxies:
        """The proxies whose ``X-Forwarded-*`` headers are believed (``TRUSTED_PROXIES``)."""
        return TrustedProxies.from_cidrs(self.settings.trusted_proxies)

    async def authenticate(self, token: str, event: AuditEvent) -> Caller:
        """Resolve the bearer token and note who is calling in the request's audit event."""
        caller = await self.tokens.resolve(token, event.time)
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
    """The token of ``Authorization: Bearer t-…``, or of Vault's ``X-Vault-Token: t-…`` (SPEC
    section 10); UnauthorizedError when absent, malformed or ambiguous.

    One pass over the raw headers (this runs on every read). A header sent twice, or a Bearer
    token and an X-Vault-Token that differ, is refused: a proxy or a log could judge one
    credential while the server acts on the other.
    """
    authorization: bytes | None = None
    vault_token: bytes | None = None
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            if authorization is not None:
                raise UnauthorizedError("send one Authorization header")
            authorization = value
        elif name == b"x-vault-token":
            if vault_token is not None:
                raise UnauthorizedError("send one X-Vault-Token header")
            vault_token = value
    vault = vault_token.decode("latin-1").strip() if vault_token is not None else ""
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            if vault and vault != token.strip():
                raise UnauthorizedError("Authorization and X-Vault-Token name different tokens")
            return token.strip()
        if not vault:
            raise UnauthorizedError("send Authorization: Bearer <token>")
    if vault:
        return vault
    raise UnauthorizedError("send Authorization: Bearer <token> (or X-Vault-Token); log in first")


def request_context(request: Request) -> RequestContext:
    """The context the services are handed: the request's audit event and time."""
    return RequestContext.of(audit_event_of(request))


async def authorized(request: Request, action: str) -> tuple[Services, RequestContext, Caller]:
    """Start an authenticated endpoint: its services, its context (the audit event, named
    ``action``) and the caller behind the bearer token (UnauthorizedError without a valid
    one)."""
    event = audit_event_of(request)
    event.action = action
    services = services_of(request)
    caller = await services.authenticate(bearer_token(request), event)
    return services, RequestContext.of(event), caller


def json_response(content: BaseModel | Any, status: int = 200) -> Response:
    """A JSON body: a response model as its schema writes it (fields it was given), or
    anything orjson serialises."""
    body = (
        content.model_dump_json(exclude_unset=True)
        if isinstance(content, BaseModel)
        else orjson.dumps(content)
    )
    return Response(body, status_code=status, media_type="application/json")
