"""The tables of Strongroom (SQLAlchemy Core). The schema itself is created by Alembic.

Nothing secret is stored in the clear: secret values are AES-GCM ciphertexts, tokens and access
keys are keyed digests, data keys are wrapped by the master key. Item names are not secret
(SPEC section 2) and stay readable so that prefix listings are index scans.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC so text comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# One row per numbered data key. purpose "encryption" keys are numbered 1..n and the newest
# encrypts; the single "digest" key keys the HMAC of tokens and access keys.
data_keys = Table(
    "data_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("purpose", String(16), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Small named counters. "generation" is bumped by every change to roles, rules, associations,
# auth methods and tokens, so each worker can tell in one read whether its caches are stale.
counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

auth_methods = Table(
    "auth_methods",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("access_id", String(16), nullable=False, unique=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("description", Text, nullable=False, default=""),
    # Type-specific settings (aws_iam bounds, sts_url, jwt_ttl, access_expires, bound_ips).
    Column("config", JSON, nullable=False),
    Column("access_key_digest", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

roles = Table(
    "roles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

role_rules = Table(
    "role_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("role_id", Integer, ForeignKey("roles.id", ondelete="CASCADE"), nullable=False),
    Column("rule_type", String(32), nullable=False),
    Column("path", String(600), nullable=False),
    Column("capabilities", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("role_id", "rule_type", "path", name="uq_role_rules_role_type_path"),
)

role_associations = Table(
    "role_associations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("assoc_id", String(32), nullable=False, unique=True),
    Column("role_id", Integer, ForeignKey("roles.id", ondelete="CASCADE"), nullable=False),
    Column(
        "auth_method_id",
        Integer,
        ForeignKey("auth_methods.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("sub_claims", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column(
        "auth_method_id",
        Integer,
        ForeignKey("auth_methods.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("claims", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

# Which associations (and so which roles) a token carries. Deleting an association deletes
# the tokens that carry it (SPEC section 4: dissociation revokes).
token_associations = Table(
    "token_associations",
    metadata,
    Column("token_id", Integer, ForeignKey("tokens.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "association_id",
        Integer,
        ForeignKey("role_associations.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

item_versions = Table(
    "item_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("key_id", Integer, nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(16), nullable=False),
    UniqueConstraint("item_id", "version", name="uq_item_versions_item_version"),
)

# Audit events, in one keyed chain per writer (strongroom.audit.chain). ``seq`` is the global
# event id that listings order by: on PostgreSQL from the sequence (no lock: replicas append
# side by side), on SQLite one more than the largest (its writers take turns anyway).
# ``writer`` and ``writer_seq`` place the event in its writer's chain.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, Sequence("audit_events_seq"), primary_key=True, autoincrement=False),
    Column("writer", BigInteger, nullable=False),
    Column("writer_seq", BigInteger, nullable=False),
    Column("time", UTCDateTime(), nullable=False, index=True),
    Column("request_id", String(32), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("access_id", String(16), nullable=True, index=True),
    Column("auth_method", String(128), nullable=True),
    Column("identity_arn", String(2048), nullable=True),
    Column("token_digest", String(64), nullable=True),
    Column("action", String(128), nullable=False),
    Column("path", String(600), nullable=True, index=True),
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Also the order in which verification walks each writer's chain.
    UniqueConstraint("writer", "writer_seq"),
)

# The head of each audit chain: row 0 the registry's (audit_registry), row w writer w's. An
# append locks only its own writer's row, so processes never queue behind one another; opening
# or closing a writer locks row 0. ``closed``: the registry holds the writer's close entry, and
# nothing may be appended to it any more. (Until revision 0004 one row, audit_chain_head, was
# locked by every append; dropping it keeps servers of older versions from appending at all.)
audit_heads = Table(
    "audit_heads",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("closed", Boolean, nullable=False),
)

# The registry of writers: a keyed chain of entries, one when a writer opens (its chain starts
# from the entry's link), one when it closes (where its chain ends), and first the end of the
# single chain of older versions (writer 1). Format: strongroom.audit.chain.
audit_registry = Table(
    "audit_registry",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("writer", BigInteger, nullable=False),
    Column("label", String(200), nullable=True),
    Column("end_seq", BigInteger, nullable=True),
    Column("end_hash", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Where the unkeyed part of the legacy chain (writer 1) ends and its keyed part begins: the last
# unkeyed event's seq and link (0 and the genesis hash on a database created keyed), sealed with
# the audit chain key by the first server that starts after the upgrade (strongroom.audit.chain).
audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("anchored_at", String(32), nullable=True),
    Column("seal", String(64), nullable=True),
)

# How far each audit journal (strongroom.audit.journal, one file per server process) has been
# moved into the chain: the byte offset after its last chained event. Updated in the same
# transaction as the events it covers, so a crash can neither lose nor repeat one.
audit_journal_progress = Table(
    "audit_journal_progress",
    metadata,
    Column("journal", String(64), primary_key=True),
    Column("moved_bytes", BigInteger, nullable=False),
)

# Signatures of AWS logins already used (SPEC section 3, check 6), kept until they expire.
login_replay = Table(
    "login_replay",
    metadata,
    Column("signature_digest", String(64), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

# Failed-login counters per source and per access ID, shared by all replicas.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("count", Integer, nullable=False),
)
