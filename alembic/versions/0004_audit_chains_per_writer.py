"""audit chains per writer

Every process now appends to audit chains of its own (writers), anchored together by a keyed
registry (strongroom.audit.chain), instead of every append of every replica locking the one
head row of a single chain.

The existing chain is kept as writer 1: its events keep their links and their ``seq`` (which
becomes their position in writer 1's chain too), and its head becomes writer 1's head. The
first server that starts with the key then writes the registry's first entry, which records
where writer 1 ends (until then ``strongroom audit verify`` says the chain is not anchored yet,
as after revision 0003). Filling the new columns rewrites every event once.

The old head table is dropped: a server of an older version still running against the upgraded
database (a rolling upgrade) then fails its audit appends (503, fail closed) instead of
appending to a chain no one verifies.

On PostgreSQL the global event ids come from a sequence from now on, starting after the
largest.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_heads",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_heads")),
    )
    op.create_table(
        "audit_registry",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("writer", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("end_seq", sa.BigInteger(), nullable=True),
        sa.Column("end_hash", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_registry")),
    )
    # Row 0: the registry, empty until a server holding the key starts. Row 1: the single chain
    # so far, as writer 1, open until that start records where it ends.
    op.execute(
        "INSERT INTO audit_heads (id, seq, hash, closed) "
        f"VALUES (0, 0, '{GENESIS_HASH}', false)"
    )
    op.execute(
        "INSERT INTO audit_heads (id, seq, hash, closed) "
        "SELECT 1, seq, hash, false FROM audit_chain_head WHERE id = 1"
    )
    op.drop_table("audit_chain_head")

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("writer", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("writer_seq", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_events SET writer = 1, writer_seq = seq")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("writer", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("writer_seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_audit_events_writer"), ["writer", "writer_seq"]
        )

    if op.get_context().dialect.name == "postgresql":
        op.execute(sa.schema.CreateSequence(sa.Sequence("audit_events_seq")))
        op.execute(
            "SELECT setval('audit_events_seq', "
            "(SELECT coalesce(max(seq), 0) + 1 FROM audit_events), false)"
        )


def downgrade() -> None:
    """Back to the single chain: possible only while no writer but the legacy one has written
    (the chains of several writers have no single-chain form)."""
    connection = op.get_bind()
    others = connection.execute(
        sa.text("SELECT count(*) FROM audit_events WHERE writer <> 1")
    ).scalar_one()
    if others:
        raise RuntimeError(
            f"cannot downgrade below revision 0004: {others} audit event(s) are in per-writer "
            "chains, which the single chain of older versions cannot hold"
        )
    if op.get_context().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("audit_events_seq")))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_writer"), type_="unique")
        batch_op.drop_column("writer_seq")
        batch_op.drop_column("writer")
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
    )
    op.execute(
        "INSERT INTO audit_chain_head (id, seq, hash) SELECT 1, seq, hash FROM audit_heads "
        "WHERE id = 1"
    )
    op.drop_table("audit_registry")
    op.drop_table("audit_heads")
