"""``create_app(settings)``: the one place where the parts are built and wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from strongroom.api.errors import install_error_handlers
from strongroom.api.middleware import RequestEnvelope
from strongroom.api.routes import audit, auth, auth_methods, roles, secrets, sys
from strongroom.api.services import Services
from strongroom.audit.journal import AuditJournal, journal_directory, recover_orphans
from strongroom.audit.store import seal_anchor
from strongroom.audit.writer import AuditFileSink, AuditWriter
from strongroom.auth.aws_iam import StsClient, create_sts_http_client
from strongroom.auth.service import LoginPolicy, LoginService
from strongroom.auth.tokens import TokenService
from strongroom.auth_methods.service import AuthMethodService
from strongroom.config import Settings
from strongroom.crypto import MasterKeyProvider, load_master_key_provider
from strongroom.db import migrate
from strongroom.db.engine import Checkpointer, Database
from strongroom.db.hot import HotReader
from strongroom.db.keys import load_or_create_keys
from strongroom.kit.clock import Clock, utc_now
from strongroom.kit.inflight import InFlight
from strongroom.roles.service import RoleService
from strongroom.secrets.service import SecretService
from strongroom.serving.handoff import LoginHandoff
from strongroom.serving.state import LOGIN_HANDOFF
from strongroom.web.console import install_console

MAX_BODY_BYTES = 1024 * 1024


def create_app(
    settings: Settings,
    *,
    master_key: MasterKeyProvider | None = None,
    sts_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
    login_thread: bool = True,
    login_processes: bool = False,
    login_inline_when_idle: bool = False,
    wal_checkpoints: bool = True,
    audit_journal: bool = False,
) -> FastAPI:
    """Build the app: migrate, unwrap the keys, wire services, routes and middleware.

    ``master_key``, ``sts_transport`` and ``clock`` are the injectable edges (tests pass
    their own); by default they come from ``settings`` and the system.

    ``login_thread``: logins run on a loop thread of their own (a login process says False).
    ``login_processes``: the app is a uvicorn worker's; its lifespan starts
    ``settings.login_processes`` login processes (strongroom.serving) and hands them to the
    worker's HTTP protocol through the lifespan state.
    ``login_inline_when_idle``: a login that finds no other request in progress runs on the
    server's own loop rather than on the login thread (a worker's, from the settings).
    ``wal_checkpoints``: run SQLite's WAL checkpoints in a background thread (a login process
    says False: its worker already does).
    ``audit_journal``: on SQLite, reads' and denials' audit events are durable once in this
    process's audit journal and reach the chain shortly after (a server's processes say True);
    journals left by processes that ended are chained first.
    """
    # Automatic checkpoints are off when background ones run: a commit never pays for one.
    database = Database.from_url(settings.database_url, background_checkpoints=True)
    if not migrate.is_up_to_date(database):
        migrate.upgrade(database)
    keys = load_or_create_keys(database, master_key or load_master_key_provider(settings))
    seal_anchor(database, keys.audit)  # before anything appends (audit/chain.py)
    journal = None
    journal_dir = journal_directory(database) if audit_journal else None
    if journal_dir is not None:
        recover_orphans(database, keys.audit, journal_dir)
        journal = AuditJournal.create(journal_dir)
    writer = AuditWriter(
        database,
        keys.audit,
        AuditFileSink(settings.audit_file) if settings.audit_file else None,
        journal=journal,
    )
    hot = HotReader(database.engine)
    token_service = TokenService(keys.digester, database, hot)
    auth_method_service = AuthMethodService(
        database, writer, keys.digester, sts_extra_endpoints=settings.sts_extra_endpoints
    )

    def new_sts_client() -> StsClient:
        http = create_sts_http_client(settings.sts_timeout_seconds, transport=sts_transport)
        return StsClient(http, timeout=settings.sts_timeout_seconds)

    in_flight = InFlight()
    services = Services(
        settings=settings,
        database=database,
        keys=keys,
        writer=writer,
        tokens=token_service,
        auth_methods=auth_method_service,
        roles=RoleService(database, writer),
        secrets=SecretService(database, writer, keys.keyring, hot),
        login=LoginService(
            database,
            writer,
            keys.digester,
            token_service,
            new_sts_client(),
            LoginPolicy(
                default_ttl=timedelta(minutes=settings.default_token_ttl_minutes),
                server_id=settings.server_id,
                max_clock_skew=timedelta(seconds=settings.sts_max_clock_skew_seconds),
                failure_limit=settings.login_failure_limit,
                failure_window=timedelta(seconds=settings.login_failure_window_seconds),
            ),
            own_thread=login_thread,
            inline_when=in_flight.alone if login_inline_when_idle else None,
            inline_sts=new_sts_client,
        ),
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        checkpointer = Checkpointer(database)
        if wal_checkpoints:
            checkpointer.start()
        handoff = None
        if login_processes and settings.login_processes > 0:
            handoff = LoginHandoff(
                settings.login_processes,
                settings.login_process_nice,
                keep_when_idle=login_inline_when_idle,
                scheduling=settings.login_process_scheduling,
            ).start()
        yield {LOGIN_HANDOFF: handoff} if handoff is not None else {}
        if handoff is not None:
            handoff.close()
        checkpointer.stop()
        await writer.drain()
        await services.login.aclose()
        hot.close()
        database.dispose()

    app = FastAPI(
        title="Strongroom",
        version="0.1.0",
        summary="Secrets for AWS workloads: log in with an IAM role, read what your roles allow.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    # Secrets first: routes are matched in order, and reads are the traffic (~50 µs per read).
    for module in (secrets, sys, auth, auth_methods, roles, audit):
        app.include_router(module.router)
    # Inside the envelope (middleware added later wraps what was added before).
    app.add_middleware(auth.LoginFastPath, services=services, route=auth.login_route())
    app.add_middleware(
        RequestEnvelope,
        writer=lambda: writer,
        clock=clock,
        max_body_bytes=MAX_BODY_BYTES,
        trusted_proxies=settings.trusted_proxies,
        in_flight=in_flight,
    )
    install_console(app)  # the web console under /ui/ (its headers wrap the envelope too)
    return app
