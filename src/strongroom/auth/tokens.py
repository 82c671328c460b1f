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

from sqlalchemy import Connection, delete, select, update

from strongroom.crypto import TokenDigester
from strongroom.db import driver
from strongroom.db.change_feed import CHANNEL, ChangeFeed
from strongroom.db.engine import GENERATION_BUMPED, Database
from strongroom.db.hot import HotReads
from strongroom.db.tables import (
    auth_methods,
    counters,
    role_associations,
    role_rules,
    roles,
    token_associations,
    tokens,
)
from strongroom.db.work import DatabaseWork
from strongroom.errors import ForbiddenError, UnauthorizedError
from strongroom.kit.ids import TOKEN_PREFIX, new_token
from strongroom.rbac import Capability, Rule, RuleSet, RuleType

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


_MINT_SQL = (
    "INSERT INTO tokens (digest, auth_method_id, claims, created_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id"
)
_MINT_LINKS_SQL = "INSERT INTO token_associations (token_id, association_id) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    expires_at: datetime


def bump_generation(connection: Connection) -> None:
    """Invalidate every worker's token and rule caches (call inside the changing transaction).

    On PostgreSQL the transaction also notifies the change feeds of every replica with the new
    value (delivered when it commits, not at all if it rolls back).
    """
    generation = connection.execute(
        update(counters)
        .where(counters.c.name == "generation")
        .values(value=counters.c.value + 1)
        .returning(counters.c.value)
    ).scalar_one()
    if not driver.is_sqlite(connection):
        db = driver.cursor(connection)
        db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(generation)))
        db.close()
    # This process learns it from Database.write once committed, before its answer leaves.
    connection.info[GENERATION_BUMPED] = int(generation)


def rules_of_roles(connection: Connection, role_ids: Sequence[int]) -> list[Rule]:
    if not role_ids:
        return []
    rows = connection.execute(
        select(
            role_rules.c.rule_type,
            role_rules.c.path,
            role_rules.c.capabilities,
            role_rules.c.expires_at,
        ).where(role_rules.c.role_id.in_(role_ids))
    ).all()
    return [
        Rule(
            rule_type=RuleType(row.rule_type),
            path=row.path,
            capabilities=frozenset(Capability(c) for c in row.capabilities.split(",") if c),
            expires_at=row.expires_at,
        )
        for row in rows
    ]


class TokenService:
    """Mints and resolves tokens; owns the per-worker caches."""

    def __init__(
        self,
        digester: TokenDigester,
        database: Database,
        hot: HotReads,
        *,
        work: DatabaseWork,
        feed: ChangeFeed | None = None,
        cache_size: int = 10_000,
    ) -> None:
        """``hot`` reads the generation counter when ``feed`` (PostgreSQL's change feed, if
        on) cannot vouch for it; ``work`` runs the full load of a caller not cached."""
        self._digester = digester
        self._database = database
        self._hot = hot
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
        db = driver.cursor(connection)
        db.execute(
            driver.sql(connection, _MINT_SQL),
            (
                self._digester.digest(token),
                auth_method_id,
                driver.stored_json(connection, claims),
                driver.stored_time(connection, now),
                driver.stored_time(connection, expires_at),
            ),
        )
        token_id = int(db.fetchone()[0])
        if association_ids:
            db.executemany(
                driver.sql(connection, _MINT_LINKS_SQL),
                [(token_id, association_id) for association_id in association_ids],
            )
        db.close()
        # Expired tokens are dead weight; sweep a few on one login in 64.
        self._minted += 1
        if self._minted % 64 == 1:
            stale = (
                select(tokens.c.id).where(tokens.c.expires_at < now).limit(100).scalar_subquery()
            )
            connection.execute(delete(tokens).where(tokens.c.id.in_(stale)))
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
        row = connection.execute(
            select(
                tokens.c.id,
                tokens.c.claims,
                tokens.c.created_at,
                tokens.c.expires_at,
                auth_methods.c.id.label("method_id"),
                auth_methods.c.name.label("method_name"),
                auth_methods.c.access_id,
            )
            .join(auth_methods, auth_methods.c.id == tokens.c.auth_method_id)
            .where(tokens.c.digest == digest)
        ).first()
        if row is None:
            raise UnauthorizedError(reason="unknown or revoked token")
        role_rows = connection.execute(
            select(roles.c.id, roles.c.name)
            .join(role_associations, role_associations.c.role_id == roles.c.id)
            .join(
                token_associations,
                token_associations.c.association_id == role_associations.c.id,
            )
            .where(token_associations.c.token_id == row.id)
            .order_by(roles.c.name)
        ).all()
        role_ids = tuple(sorted({r.id for r in role_rows}))
        claims: dict[str, str] = dict(row.claims)
        key = (role_ids, tuple(sorted(claims.items())))
        ruleset = self._rulesets.get(key)
        if ruleset is None:
            ruleset = RuleSet(rules_of_roles(connection, role_ids), claims)
        caller = Caller(
            token_digest=digest,
            access_id=row.access_id,
            auth_method_id=row.method_id,
            auth_method_name=row.method_name,
            claims=claims,
            role_names=tuple(sorted({r.name for r in role_rows})),
            rules=ruleset,
            issued_at=row.created_at,
            expires_at=row.expires_at,
        )
        return caller, key

    def revoke(self, connection: Connection, digest: str) -> None:
        connection.execute(delete(tokens).where(tokens.c.digest == digest))
        bump_generation(connection)
