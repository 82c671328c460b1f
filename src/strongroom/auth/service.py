"""Login: verify → match → mint → audit (SPEC sections 3 and 4).

Every failed login raises :class:`AuthenticationDenied` with a precise ``reason`` for the audit
trail and the server log; the client always sees the same 401 body. Failures are counted per
source address and per (source address, access ID), never per access ID alone, in the database
(so all replicas share the count), and answer 429 with ``Retry-After`` past the limit
(:mod:`strongroom.auth.login_failures`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter
from strongroom.auth import login_repository
from strongroom.auth.aws_iam import (
    AwsIamBounds,
    StsClient,
    check_bounds,
    claims_from_identity,
    decode_cloud_id,
    decode_vault_fields,
    vet_sts_request,
)
from strongroom.auth.login_failures import (
    FailureCounter,
    FailureKeys,
    FailureLimits,
    check_rate_limit,
    failure_keys,
)
from strongroom.auth.login_loop import LoginLoop
from strongroom.auth.login_outcome import count_login
from strongroom.auth.login_reads import LoginReads
from strongroom.auth.schemas import LoginRequest, Token, parse_login_request
from strongroom.auth.tokens import TokenService
from strongroom.auth_methods.repository import AuthMethodRecord
from strongroom.crypto import TokenDigester
from strongroom.db import driver
from strongroom.db.engine import Database, WriterBusyError
from strongroom.db.work import DatabaseWork
from strongroom.errors import AuthenticationDenied, InvalidRequestError
from strongroom.kit.glob import glob_match
from strongroom.request_context import RequestContext
from strongroom.roles.repository import associations_for_login
from strongroom.serving.placement import Placement

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    default_ttl: timedelta
    server_id: str | None
    max_clock_skew: timedelta
    failures: FailureLimits


@dataclass(frozen=True, slots=True)
class SignatureSpend:
    """A signed STS request's mark in the replay cache: its signature's digest, kept until
    no server would accept the request's date any more."""

    digest: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MatchedAssociation:
    id: int
    role_name: str


def sub_claims_match(sub_claims: Mapping[str, Sequence[str]], claims: Mapping[str, str]) -> bool:
    """Every key must match (AND); any value of a key may (OR); values are ``*`` globs."""
    for key, patterns in sub_claims.items():
        value = claims.get(key)
        if value is None or not any(glob_match(p, value) for p in patterns):
            return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(slots=True)
class _LoginLoopParts:
    """What logins need that belongs to one event loop (or its thread): an STS client (its
    pooled connections live on that loop), the driver-level reads (one connection per
    thread), and whether that loop may wait for the writer lock (only if it serves no reads)."""

    sts: StsClient
    reads: LoginReads
    may_block: bool


class LoginService:
    def __init__(
        self,
        database: Database,
        writer: AuditWriter,
        digester: TokenDigester,
        token_service: TokenService,
        sts_client: StsClient,
        policy: LoginPolicy,
        *,
        placement: Placement,
        work: DatabaseWork,
        idle: Callable[[], bool] | None = None,
        inline_sts: Callable[[], StsClient] | None = None,
    ) -> None:
        """Where logins run comes from ``placement`` (strongroom.serving.placement), where
        their database work runs from ``work`` (on PostgreSQL: on its threads, whichever loop
        the login is on, within ``DB_TIMEOUT_SECONDS``; on SQLite: as below).

        ``placement.login_thread``: on a loop thread of their own (see login_loop.py), so that
        a process serving reads keeps serving them during a burst of logins; a login process
        runs them on its own loop.

        ``placement.login_inline_when_idle``: when ``idle()`` returns True at the start of a
        login (the process serves no other request), the login runs on the caller's loop
        instead: no thread hop, and nothing there to slow down. It then never waits for the
        SQLite writer lock on that loop (a busy lock sends the write to a thread), and uses an
        STS client of that loop's own, made by ``inline_sts``.
        """
        own_thread = placement.login_thread
        inline_when = idle if placement.login_inline_when_idle else None
        self._db = database
        self._work = work
        self._writer = writer
        self._digester = digester
        self._tokens = token_service
        self._policy = policy
        self._failures = FailureCounter(database, policy.failures)
        self._loop = LoginLoop() if own_thread else None
        # The loop that runs logins: the login thread's, or (a login process) the caller's.
        self._parts = _LoginLoopParts(sts_client, LoginReads(database.engine), may_block=True)
        self._inline_when = inline_when if own_thread else None
        # Made now, not at the first login that runs inline: building an STS client (httpx
        # loads its TLS context) took 20 to 30 ms of CPU, a stall of the loop serving reads.
        self._inline: _LoginLoopParts | None = (
            _LoginLoopParts(inline_sts(), LoginReads(database.engine), may_block=False)
            if self._inline_when is not None and inline_sts is not None
            else None
        )
        self._logins = 0

    def close(self) -> None:
        """Close the STS client on the loop that used it, then stop that loop.

        Without a login thread, the STS client belongs to the caller's loop: use :meth:`aclose`.
        """
        if self._loop is not None:
            self._loop.close(self._parts.sts.aclose())
        self._parts.reads.close()

    async def aclose(self) -> None:
        """Close the STS clients and the login thread, from the server's event loop."""
        if self._inline is not None:
            await self._inline.sts.aclose()
            self._inline.reads.close()
        if self._loop is None:
            await self._parts.sts.aclose()
            self._parts.reads.close()
        else:
            self.close()

    async def _run(self, login: Callable[[_LoginLoopParts], Coroutine[Any, Any, T]]) -> T:
        """Run ``login`` where it costs least: on this loop in a login process, or when no
        other request is in progress here; else on the login thread."""
        if self._loop is None:
            return await login(self._parts)
        if self._inline is not None and self._inline_when is not None and self._inline_when():
            return await login(self._inline)
        return await self._loop.run(login(self._parts))

    async def _write(self, parts: _LoginLoopParts, work: Callable[[bool], T]) -> T:
        """Run ``work(blocking)``, a write transaction, without stalling a loop that serves
        reads: there it tries for the SQLite writer lock and, if busy, waits in a thread.
        PostgreSQL: always on a thread of ``work``, within its timeout."""
        if self._work.in_threads:
            return await self._work.run(work, True)
        if parts.may_block:
            return work(True)
        if self._db.dialect == "sqlite":
            try:
                return work(False)
            except WriterBusyError:
                pass
        return await asyncio.to_thread(work, True)

    async def login(self, body: LoginRequest, context: RequestContext) -> Token:
        """Log in; return the token response. Raises AuthenticationDenied, RateLimitedError,
        InvalidRequestError or UpstreamUnavailableError. The caller's address is the one its
        request's audit event records (``context.event.source_ip``): the one the failure
        counters and ``bound_ips`` judge is the one the audit trail names."""
        event = context.event
        event.access_id = body.access_id
        # Logins run on their own loop thread (see login_loop.py): a burst of them must not
        # queue the reads served by this one. A lone one runs here (see _run).
        return await self._run(
            lambda parts: self._login_and_record_outcome(
                parts, body, event.source_ip, event, context.now
            )
        )

    async def login_json(self, raw: bytes, context: RequestContext) -> Token:
        """Like :meth:`login`, from the raw body: even parsing happens on the login loop."""
        event = context.event
        return await self._run(
            lambda parts: self._parse_and_login(parts, raw, event.source_ip, event, context.now)
        )

    async def _parse_and_login(
        self,
        parts: _LoginLoopParts,
        raw: bytes,
        source_ip: str,
        event: AuditEvent,
        now: datetime,
    ) -> Token:
        try:
            body = parse_login_request(raw)
        except Exception as exc:
            count_login(None, exc)
            raise
        event.access_id = body.access_id
        return await self._login_and_record_outcome(parts, body, source_ip, event, now)

    async def _login_and_record_outcome(
        self,
        parts: _LoginLoopParts,
        body: LoginRequest,
        source_ip: str,
        event: AuditEvent,
        now: datetime,
    ) -> Token:
        """Log in on whichever loop ``parts`` belongs to; record a denial against the
        source's failure counters and count every outcome in the login metrics."""
        # Counted per source and per (source, access ID), never per access ID alone: anyone
        # can name an access ID, so its own counter would let them lock its owner out.
        keys = failure_keys(source_ip, body.access_id)
        try:
            try:
                result = await self._login(parts, body, source_ip, keys, event, now)
            except AuthenticationDenied:
                await self._write(
                    parts, lambda blocking: self._failures.record(keys, now, blocking)
                )
                raise
        except Exception as exc:
            count_login(body.access_type, exc)
            raise
        count_login(body.access_type, None)
        return result

    async def _login(
        self,
        parts: _LoginLoopParts,
        body: LoginRequest,
        source_ip: str,
        keys: FailureKeys,
        event: AuditEvent,
        now: datetime,
    ) -> Token:
        # 429 before any work: a source that failed too often costs no key check, no STS call.
        counts = await self._work.run(parts.reads.failure_counts, keys.all())
        check_rate_limit(counts, self._policy.failures, now)
        method = await self._work.run(parts.reads.auth_method, body.access_id)
        if method is None:
            raise AuthenticationDenied(f"no auth method with access ID {body.access_id!r}")
        event.auth_method = method.name
        wanted = "api_key" if body.access_type in ("access_key", "api_key") else "aws_iam"
        if method.type != wanted:
            raise AuthenticationDenied(
                f"access type {body.access_type} does not match the {method.type} auth method"
            )
        self._check_access_limits(method, source_ip, now)
        spend: SignatureSpend | None = None
        if method.type == "api_key":
            claims = self._verify_access_key(method, body)
        else:
            claims, spend = await self._verify_aws_iam(parts, method, body, source_ip, now)
        event.identity_arn = claims.get("arn")
        return await self._write(
            parts, lambda blocking: self._mint(method, claims, event, now, spend, blocking)
        )

    def _mint(
        self,
        method: AuthMethodRecord,
        claims: dict[str, str],
        event: AuditEvent,
        now: datetime,
        spend: SignatureSpend | None = None,
        blocking: bool = True,
    ) -> Token:
        """Spend the signature (if any), store the token and the login's audit event in one
        transaction; return the body. One write transaction per login: on SQLite every write
        transaction is a turn of the one writer lock that reads' audit commits wait for.
        ``blocking=False``: WriterBusyError, before anything is done, if the lock is busy."""
        try:
            with self._db.write(blocking=blocking) as connection:
                if spend is not None:
                    self._spend(connection, spend, now)
                body = self._mint_in(connection, method, claims, event, now)
        except driver.INTEGRITY_ERRORS:
            event.token_digest = None
            event.reopen()
            # Another login with the same signed request committed first (replay attack).
            raise AuthenticationDenied(
                "replayed request: this signature was already used"
            ) from None
        except BaseException:
            event.token_digest = None  # no token was issued: its event must not name one
            event.reopen()
            raise
        event.written = True
        return body

    def _mint_in(
        self,
        connection: Connection,
        method: AuthMethodRecord,
        claims: dict[str, str],
        event: AuditEvent,
        now: datetime,
    ) -> Token:
        """The token and the audit event, inside the caller's write transaction."""
        matched = self._matching_associations(connection, method.id, claims)
        ttl = timedelta(minutes=int(method.config.get("jwt_ttl") or 0)) or self._policy.default_ttl
        access_expires = _parse_time(method.config.get("access_expires"))
        if access_expires is not None:
            ttl = min(ttl, access_expires - now)
        minted = self._tokens.mint(
            connection,
            auth_method_id=method.id,
            claims=claims,
            association_ids=[m.id for m in matched],
            ttl=ttl,
            now=now,
        )
        event.token_digest = self._digester.digest(minted.token)
        event.finish(200)
        # Chain and AUDIT_FILE inside the transaction: a failing sink mints no token (503).
        self._writer.append(connection, [event])
        return Token(
            token=minted.token,
            expires_at=minted.expires_at,
            expires_in=int((minted.expires_at - now).total_seconds()),
            access_id=method.access_id,
            identity=claims,
            roles=sorted({m.role_name for m in matched}),
        )

    def _check_access_limits(self, method: AuthMethodRecord, source_ip: str, now: datetime) -> None:
        access_expires = _parse_time(method.config.get("access_expires"))
        if access_expires is not None and access_expires <= now:
            raise AuthenticationDenied(f"auth method {method.name} expired at {access_expires}")
        bound_ips = method.config.get("bound_ips") or []
        if bound_ips:
            try:
                address = ipaddress.ip_address(source_ip)
            except ValueError:
                raise AuthenticationDenied(f"source address {source_ip!r} unknown") from None
            if not any(address in ipaddress.ip_network(cidr) for cidr in bound_ips):
                raise AuthenticationDenied(f"source address {source_ip} not in bound_ips")

    def _verify_access_key(self, method: AuthMethodRecord, body: LoginRequest) -> dict[str, str]:
        if not body.access_key:
            raise InvalidRequestError("access_key is required for access_type access_key")
        if method.access_key_digest is None or not self._digester.matches(
            body.access_key, method.access_key_digest
        ):
            raise AuthenticationDenied("access key does not match")
        return {}

    async def _verify_aws_iam(
        self,
        parts: _LoginLoopParts,
        method: AuthMethodRecord,
        body: LoginRequest,
        source_ip: str,
        now: datetime,
    ) -> tuple[dict[str, str], SignatureSpend]:
        if body.cloud_id is not None:
            unverified = decode_cloud_id(body.cloud_id)
        elif body.iam_request_url is not None:
            unverified = decode_vault_fields(
                body.iam_http_request_method,
                body.iam_request_url,
                body.iam_request_body,
                body.iam_request_headers,
            )
        else:
            raise InvalidRequestError(
                "an aws_iam login needs cloud_id, or iam_http_request_method, iam_request_url, "
                "iam_request_body and iam_request_headers"
            )
        sts_url = str(method.config["sts_url"])
        vetted = vet_sts_request(
            unverified,
            sts_url=sts_url,
            server_id=self._policy.server_id,
            now=now,
            max_skew=self._policy.max_clock_skew,
        )
        # Single use (replay attack): a signed request logs in at most once, on any replica.
        # Checked here so that a replay never reaches STS; made certain by the primary key
        # when the login commits (two copies racing each other: one token, one 401).
        spend = SignatureSpend(
            digest=hashlib.sha256(vetted.signature.encode("ascii")).hexdigest(),
            # Remembered as long as any server would still accept the request's date.
            expires_at=max(vetted.amz_date, now) + self._policy.max_clock_skew,
        )
        if await self._work.run(parts.reads.signature_spent, spend.digest):
            raise AuthenticationDenied("replayed request: this signature was already used")
        identity = await parts.sts.get_caller_identity(vetted)
        claims = claims_from_identity(identity)
        check_bounds(_bounds_of(method), claims, source_ip)
        return claims.as_dict(), spend

    def _spend(self, connection: Connection, spend: SignatureSpend, now: datetime) -> None:
        """Record the signature as used, in the login's transaction (IntegrityError: reused)."""
        if self._sweep_due():
            login_repository.delete_expired_spends(connection, now)
        login_repository.spend_signature(connection, spend.digest, spend.expires_at)

    @staticmethod
    def _matching_associations(
        connection: Connection, method_id: int, claims: Mapping[str, str]
    ) -> list[MatchedAssociation]:
        # Driver level: inside every login's write transaction (roles/repository.py).
        return [
            MatchedAssociation(id=association.id, role_name=association.role_name)
            for association in associations_for_login(connection, method_id)
            if sub_claims_match(association.sub_claims, claims)
        ]

    def _sweep_due(self) -> bool:
        """Expired replay entries are swept on one login in 64, not on every one."""
        self._logins += 1
        return self._logins % 64 == 1


def _bounds_of(method: AuthMethodRecord) -> AwsIamBounds:
    config = method.config

    def listed(key: str) -> tuple[str, ...]:
        return tuple(config.get(key) or ())

    return AwsIamBounds(
        bound_aws_account_id=listed("bound_aws_account_id"),
        bound_arn=listed("bound_arn"),
        bound_role_name=listed("bound_role_name"),
        bound_role_id=listed("bound_role_id"),
        bound_resource_id=listed("bound_resource_id"),
        bound_user_name=listed("bound_user_name"),
        bound_user_id=listed("bound_user_id"),
        bound_ips=tuple(ipaddress.ip_network(c) for c in config.get("bound_ips") or ()),
    )
