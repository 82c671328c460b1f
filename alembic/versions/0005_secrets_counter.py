"""secrets counter

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

The ``secrets`` counter: bumped by every change to an item or its versions, so that a worker
can keep the item-version rows it read for as long as the change feed vouches for the counter
(``db/counters.py``, ``db/hot.py``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))


def upgrade() -> None:
    op.bulk_insert(_COUNTERS, [{"name": "secrets", "value": 0}])


def downgrade() -> None:
    op.execute(_COUNTERS.delete().where(_COUNTERS.c.name == "secrets"))
