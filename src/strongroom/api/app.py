"""``create_app(settings)``: the one place where the parts are built and wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp

from strongroom.api.direct_routes import DirectRoutes
from strongroom.api.errors import install_error_handlers
from strongroom.api.front import StrongroomApp
from strongroom.api.middleware import RequestEnvelope
from strongroom.api.openapi import install_openapi
from strongroom.api.routes import (
    audit,
    auth,
    auth_methods,
    roles,
    secrets,
    sys,
    vault_auth,
    vault_kv,
)
from strongroom.api.services import Services
from strongroom.audit.chain import ChainKey
from strongroom.audit.journal import AuditJournal, journal_directory, recover_orphans
from strongroom.audit.store import seal_anchor
from strongroom.audit.writer import AuditFileSink, AuditWriter
from strongroom.auth.aws_iam import StsClient, create_sts_http_client, parse_connect_to
from strongroom.auth.login_failures import FailureLimits
from strongroom.auth.service import LoginPolicy, LoginService
from strongroom.auth.tokens import TokenService
from strongroom.auth_methods.service import AuthMethodService
from strongroom.config import Settings
from strongroom.crypto import MasterKeyProvider, load_master_key_provider
from strongroom.db import migrate
from strongroom.db.change_feed import ChangeFeed
from strongroom.db.engine import Checkpointer, Database
from strongroom.db.hot import hot_reads
from strongroom.db.keys import load_or_create_keys
from strongroom.db.live_keys import LiveKeyring
from strongroom.db.work import DatabaseWork
from strongroom.errors import ConfigurationError
from strongroom.kit.clock import Clock, utc_now
from strongroom.kit.inflight import InFlight
from strongroom.roles.checks import EscalationChecks
from strongroom.roles.service import RoleService
from strongroom.secrets.service import SecretService
from strongroom.serving.handoff import LoginHandoff, LoginPool
from strongroom.serving.placement import Placement, database_work_in_threads
from strongroom.serving.state import LOGIN_HANDOFF, WRITES_COALESCED
from strongroom.web.console import install_console
from strongroom.web.docs import install_docs
from strongroom.web.headers import ConsoleSecurityHeaders

MAX_BODY_BYTES = 1024 * 1024
RETRY_SECONDS = 5.0
log = structlog.get_logger("strongroom.api")


def create_app(
    settings: Settings,
    *,
    placement: Placement | None = None,
    login_pool: LoginPool | None = None,
    master_key: MasterKeyProvider | None = None,
    sts_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """Build the app: migrate, unwrap the keys, wire services, routes and middleware.

    ``placement`` (strongroom.serving.placement) says what this process's app does where:
    a server worker's, a login process's, or (the default) an app in the caller's process.
    ``login_pool``: the server's login processes, which a worker's lifespan hands new login
    connections to (through the lifespan state, to the worker's HTTP protocol).

    ``master_key``, ``sts_transport`` and ``clock`` are the injectable edges (tests pass
    their own); by default they come from ``settings`` and the system.
    """
    connect_to = parse_connect_to(settings.sts_connect_to)  # ConfigurationError before any work
    placement = placement or Placement.in_process()
    # Automatic checkpoints are off when background ones run: a commit never pays for one.
    database = Database.from_url(
        settings.database_url, background_checkpoints=True, timeout=settings.db_timeout_seconds
    )
    if placement.migrate and not migrate.is_up_to_date(database):
        migrate.upgrade(database)
    master = master_key or load_master_key_provider(settings)
    keys = load_or_create_keys(database, master, create=placement.migrate)
    keyring = LiveKeyring(keys.keyring, database, master)  # follows `keys rotate`
    # Before anything appends (audit/chain.py). A server's supervisor sealed it before forking,
    # so a worker only reads here: it still starts when the database cannot be written.
    seal_anchor(database, keys.audit)
    journal = None
    orphans_left = False
    journal_dir = journal_directory(database) if placement.audit_journal else None
    if journal_dir is not None:
        orphans_left = not _recover_orphans(database, keys.audit, journal_dir)
        journal = _open_journal(journal_dir)
    writer = AuditWriter(
        database,
        keys.audit,
        AuditFileSink(settings.audit_file) if settings.audit_file else None,
        journal=journal,
        timeout=settings.db_timeout_seconds,
        batches_in_flight=settings.audit_batches_in_flight,
    )
    # Where database work runs (serving/placement.py): inline on SQLite; on PostgreSQL, hot
    # reads as asynchronous I/O and everything else on threads, all within DB_TIMEOUT_SECONDS.
    work = DatabaseWork(
        in_threads=database_work_in_threads(settings), timeout=settings.db_timeout_seconds
    )
    feed = (
        ChangeFeed(database.engine.url, timeout=settings.db_timeout_seconds)
        if placement.change_feed and settings.change_feed and database.dialect != "sqlite"
        else None
    )
    hot = hot_reads(
        database.engine,
        timeout=settings.db_timeout_seconds,
        feed=feed,
        keep_bytes=settings.read_cache_mb * 1024 * 1024,
    )
    if feed is not None:
        database.counter_listeners.append(feed.committed)
    token_service = TokenService(keys.digester, database, hot, writer=writer, work=work, feed=feed)
    checks = EscalationChecks(in_thread=settings.rbac_check_thread)
    auth_method_service = AuthMethodService(
        database, writer, keys.digester, checks, sts_extra_endpoints=settings.sts_extra_endpoints
    )

    def new_sts_client() -> StsClient:
        http = create_sts_http_client(settings.sts_timeout_seconds, transport=sts_transport)
        return StsClient(http, timeout=settings.sts_timeout_seconds, connect_to=connect_to)

    in_flight = InFlight()
    services = Services(
        settings=settings,
        database=database,
        keys=keys,
        keyring=keyring,
        writer=writer,
        tokens=token_service,
        auth_methods=auth_method_service,
        roles=RoleService(database, writer, checks),
        secrets=SecretService(database, writer, keyring, hot, work),
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
                failures=FailureLimits(
                    pair=settings.login_failure_limit,
                    source=settings.source_failure_limit,
                    window=timedelta(seconds=settings.login_failure_window_seconds),
                ),
            ),
            placement=placement,
            work=work,
            idle=in_flight.alone,
            inline_sts=new_sts_client,
        ),
        clock=clock,
        work=work,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        checkpointer = Checkpointer(database)
        if placement.wal_checkpoints:
            checkpointer.start()
        await hot.open()  # PostgreSQL: the pool connects in the background
        if feed is not None:
            feed.start()
        handoff = None
        if placement.login_handoff and login_pool is not None and len(login_pool) > 0:
            handoff = LoginHandoff(login_pool, keep_when_idle=placement.login_inline_when_idle)
        recovery = (
            asyncio.create_task(_recover_orphans_later(database, keys.audit, journal_dir))
            if orphans_left and journal_dir is not None
            else None
        )
        state: dict[str, Any] = {WRITES_COALESCED: settings.coalesced_writes}
        if handoff is not None:
            state[LOGIN_HANDOFF] = handoff
        yield state
        if recovery is not None:
            recovery.cancel()
        if handoff is not None:
            handoff.close()
        checkpointer.stop()
        await writer.drain()
        await services.login.aclose()
        checks.close()
        if feed is not None:
            await feed.aclose()
        await hot.aclose()
        work.close()
        database.dispose()

    app = StrongroomApp(
        title="Strongroom",
        version="0.1.0",
        summary="Secrets for AWS workloads: log in with an IAM role, read what your roles allow.",
        lifespan=lifespan,
        # /docs is the server's own page (web/docs.py); FastAPI's load from a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.services = services
    app.state.placement = placement  # /metrics: a server's process reports the whole server
    install_error_handlers(app)
    install_openapi(app)
    # Secrets first: routes are matched in order, and reads are the traffic (~50 µs per read);
    # then Vault's KV reads (SPEC section 10; its prefixes /v1/secret/ and /v1/sys/internal/
    # overlap no native route).
    for module in (secrets, vault_kv, sys, auth, auth_methods, roles, audit, vault_auth):
        app.include_router(module.router)
    install_docs(app)
    install_console(app)  # the web console under /ui/

    def front(framework: ASGIApp) -> ASGIApp:
        """Every HTTP request, outermost first: the console's security headers (so that they
        also cover the envelope's own answers to console paths), the request envelope, the
        direct routes, then FastAPI (``api/front.py``)."""
        inner = framework
        if settings.direct_routes:
            inner = DirectRoutes(inner, routes=[secrets.direct_route(), auth.direct_route()])
        enveloped = RequestEnvelope(
            inner,
            writer=lambda: writer,
            clock=clock,
            max_body_bytes=MAX_BODY_BYTES,
            trusted_proxies=settings.trusted_proxies,
            in_flight=in_flight,
        )
        return ConsoleSecurityHeaders(enveloped)

    app.put_in_front(front)
    return app


# A process that starts while the database or the disk cannot be written (full, read-only)
# still starts, and answers 503 where it needs to write: dying at start, each replacement
# would die the same way.


def _recover_orphans(database: Database, key: ChainKey, directory: Path) -> bool:
    """Chain the journals of processes that ended; False when that failed (retried later)."""
    try:
        recover_orphans(database, key, directory)
    except Exception as exc:  # any storage failure: retried by _recover_orphans_later
        log.warning("audit_journal_recovery_failed", error=repr(exc), retry_seconds=RETRY_SECONDS)
        return False
    return True


async def _recover_orphans_later(database: Database, key: ChainKey, directory: Path) -> None:
    while True:
        await asyncio.sleep(RETRY_SECONDS)
        if await asyncio.to_thread(_recover_orphans, database, key, directory):
            return


def _open_journal(directory: Path) -> AuditJournal | None:
    """This process's audit journal; None (events commit to the chain directly) when it cannot
    be created."""
    try:
        return AuditJournal.create(directory)
    except (OSError, ConfigurationError) as exc:
        log.warning("audit_journal_unavailable", error=repr(exc))
        return None
