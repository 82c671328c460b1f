"""audit journal progress

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_journal_progress",
        sa.Column("journal", sa.String(length=64), nullable=False),
        sa.Column("moved_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("journal", name=op.f("pk_audit_journal_progress")),
    )


def downgrade() -> None:
    op.drop_table("audit_journal_progress")
