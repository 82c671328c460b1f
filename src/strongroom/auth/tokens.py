"""Tokens: minting, resolving to a :class:`Caller`, revoking (SPEC section 4).

A token is stored only as its keyed digest. Resolving one is on every request's path, so each
worker keeps the resolved callers and compiled rule sets in memory, valid for one value of the
``generation`` counter; every change to roles, rules, associations, auth methods or tokens bumps
it, and the next request anywhere sees the change: one indexed read per request, or, on
PostgreSQL with the change feed (``db/change_feed.py``), none while the feed vouches for the
value it was notified of.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth import token_repository
from strongroom.auth.schemas import TokenDescription
from strongroom.crypto import TokenDigester
from strongroom.db.change_feed import ChangeFeed
from strongroom.db.engine import Database
from strongroom.db.hot import HotReads
from strongroom.db.work import DatabaseWork
from strongroom.errors import ForbiddenError, UnauthorizedError
from strongroom.kit.ids import TOKEN_PREFIX, new_token
from strongroom.rbac import Capability, RuleSet, RuleType
from strongroom.request_context import RequestContext
from strongroom.roles.repository import rules_of_roles

MAX_TOKEN_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified identity behind a request's token, and what it may do."""

    token_digest: str
    access_id: str
    auth_method_id: int
    auth_method_name: str
    claims: Mapping[str, str]
    role_names: tuple[str, ...]
    rules: RuleSet
    issued_at: datetime
    expires_at: datetime

    @property
    def identity_arn(self) -> str | None:
        return self.claims.get("arn")

    def allowed(self, rule_type: RuleType, path: str, now: datetime) -> frozenset[Capability]:
        return self.rules.allowed(rule_type, path, now)

    def require(
        self, capability: Capability, rule_type: RuleType, path: str, now: datetime
    ) -> None:
        """Raise ForbiddenError unless the caller's rules grant ``capability`` on ``path``."""
        if not self.rules.may(capability, rule_type, path, now):
            raise ForbiddenError(
                reason=f"{capability.value} on {rule_type.value} {path} not allowed by roles "
                f"{list(self.role_names)}"
            )


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    expires_at: datetime


class TokenService:
    """Mints and resolves tokens; owns the per-worker caches."""

    def __init__(
        self,
        digester: TokenDigester,
        database: Database,
        hot: HotReads,
        *,
        writer: AuditWriter,
        work: DatabaseWork,
        feed: ChangeFeed | None = None,
        cache_size: int = 10_000,
    ) -> None:
        """``hot`` reads the generation counter when ``feed`` (PostgreSQL's change feed, if
        on) cannot vouch for it; ``work`` runs the full load of a caller not cached."""
        self._digester = digester
        self._database = database
        self._hot = hot
        self._writer = writer
        self._work = work
        self._feed = feed
        self._cache_size = cache_size
        self._generation = -1
        self._callers: OrderedDict[str, Caller] = OrderedDict()
        self._rulesets: dict[tuple[Any, ...], RuleSet] = {}
        self._minted = 0

    def digest(self, token: str) -> str:
        return self._digester.digest(token)

    def mint(
        self,
        connection: Connection,
        *,
        auth_method_id: int,
        claims: Mapping[str, str],
        association_ids: Sequence[int],
        ttl: timedelta,
        now: datetime,
    ) -> MintedToken:
        """Store a new token (as its digest) carrying ``association_ids``; return it once."""
        token = new_token()
        expires_at = now + ttl
        # Driver level: this runs inside every login's write transaction (db/driver.py).
        token_repository.insert_token(
            connection,
            digest=self._digester.digest(token),
            auth_method_id=auth_method_id,
            claims=claims,
            association_ids=association_ids,
            created_at=now,
            expires_at=expires_at,
        )
        # Expired tokens are dead weight; sweep a few on one login in 64.
        self._minted += 1
        if self._minted % 64 == 1:
            token_repository.delete_expired(connection, now)
        return MintedToken(token=token, expires_at=expires_at)

    async def resolve(self, unverified_token: str, now: datetime) -> Caller:
        """The caller behind ``unverified_token``; UnauthorizedError if unknown or expired.

        When the caller is cached, which is the common case: one driver-level read (the
        generation), or none while the change feed vouches for it. A full load through
        SQLAlchemy otherwise (through ``work``: off the event loop on PostgreSQL).
        """
        # Bound the work an attacker can make us do before the digest (hash flooding).
        if (
            not unverified_token.startswith(TOKEN_PREFIX)
            or len(unverified_token) > MAX_TOKEN_LENGTH
        ):
            raise UnauthorizedError(reason="malformed token")
        digest = self._digester.digest(unverified_token)
        generation = self._feed.generation() if self._feed is not None else None
        if generation is None:
            generation = await self._hot.generation()
        if generation != self._generation:
            self._callers.clear()
            self._rulesets.clear()
            self._generation = generation
        cached = self._callers.get(digest)
        if cached is not None:
            caller = cached
        else:
            caller, ruleset_key = await self._work.run(self._load_caller, digest)
            # Loaded while the loop went on (PostgreSQL: in a thread): cached only if no
            # change was seen meanwhile, else it may hold what the change took away.
            if self._generation == generation:
                self._rulesets.setdefault(ruleset_key, caller.rules)
                self._callers[digest] = caller
                if len(self._callers) > self._cache_size:
                    self._callers.popitem(last=False)
        if caller.expires_at <= now:
            raise UnauthorizedError(reason="token expired")
        return caller

    def _load_caller(self, digest: str) -> tuple[Caller, tuple[Any, ...]]:
        with self._database.read() as connection:
            return self._load(connection, digest)

    def _load(self, connection: Connection, digest: str) -> tuple[Caller, tuple[Any, ...]]:
        """The caller of ``digest`` and the key of its rule set (cached by the caller)."""
        token = token_repository.token_by_digest(connection, digest)
        if token is None:
            raise UnauthorizedError(reason="unknown or revoked token")
        carried = token_repository.roles_of_token(connection, token.id)
        role_ids = tuple(sorted({role.id for role in carried}))
        claims = token.claims
        key = (role_ids, tuple(sorted(claims.items())))
        ruleset = self._rulesets.get(key)
        if ruleset is None:
            ruleset = RuleSet(rules_of_roles(connection, role_ids), claims)
        caller = Caller(
            token_digest=digest,
            access_id=token.access_id,
            auth_method_id=token.auth_method_id,
            auth_method_name=token.auth_method_name,
            claims=claims,
            role_names=tuple(sorted({role.name for role in carried})),
            rules=ruleset,
            issued_at=token.created_at,
            expires_at=token.expires_at,
        )
        return caller, key

    @staticmethod
    def describe(caller: Caller, context: RequestContext) -> TokenDescription:
        """The caller's own token: needs no right, any token may describe itself."""
        return TokenDescription(
            access_id=caller.access_id,
            auth_method=caller.auth_method_name,
            identity=dict(caller.claims),
            roles=list(caller.role_names),
            issued_at=caller.issued_at,
            expires_at=caller.expires_at,
            expires_in=max(0, int((caller.expires_at - context.now).total_seconds())),
        )

    def revoke(self, connection: Connection, digest: str) -> None:
        """Delete the token stored as ``digest``, in the caller's transaction."""
        token_repository.delete_token(connection, digest)
        token_repository.bump_generation(connection)

    def revoke_own(self, caller: Caller, context: RequestContext, status: int) -> None:
        """Revoke the token the caller presented (sign out), its audit event (answered with
        ``status``) in the same transaction. Needs no right: any token may end itself.
        Synchronous database work: from a loop, run it through ``db/work.py``."""
        with audited_write(self._database, self._writer, context.event, status) as connection:
            self.revoke(connection, caller.token_digest)
