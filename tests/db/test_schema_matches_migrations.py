"""The migrations build exactly the schema ``db/tables.py`` declares, on SQLite and PostgreSQL.

A change to ``tables.py`` without a migration (or a migration that differs from it) fails here,
with the differences Alembic's autogenerate sees: what ``alembic check`` from a checkout says
(CONTRIBUTING.md, "Adding a migration").
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from strongroom.db.engine import Database
from strongroom.db.tables import metadata


def test_the_migrated_schema_is_the_declared_one(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], (
        "db/tables.py and the migrations in alembic/versions disagree; add a migration "
        f"(alembic revision --autogenerate) for: {differences}"
    )
