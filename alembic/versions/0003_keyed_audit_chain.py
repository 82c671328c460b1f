"""keyed audit chain

The audit chain's links become HMAC-SHA256 under a key only the master key (or KMS key) can
use (strongroom.audit.chain). The existing chain is kept: its head becomes the anchor, which
the first server that starts with the key seals, and later events link to it keyed.

The head table is renamed: a server of an older version still running against the upgraded
database (a rolling upgrade) then fails its audit appends (503, fail closed) instead of
extending the keyed chain with unkeyed links that no verify could ever accept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.rename_table("audit_head", "audit_chain_head")
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER INDEX pk_audit_head RENAME TO pk_audit_chain_head")
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("anchored_at", sa.String(length=32), nullable=True),
        sa.Column("seal", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_anchor")),
    )
    # The unkeyed chain ends where it stands now; unsealed until a server holds the key.
    op.execute(
        "INSERT INTO audit_anchor (id, seq, hash) SELECT 1, seq, hash FROM audit_chain_head "
        "WHERE id = 1"
    )


def downgrade() -> None:
    op.drop_table("audit_anchor")
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER INDEX pk_audit_chain_head RENAME TO pk_audit_head")
    op.rename_table("audit_chain_head", "audit_head")
