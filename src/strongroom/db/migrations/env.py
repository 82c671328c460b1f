"""Alembic environment: migrations run on the connection that ``strongroom.db.migrate`` passes."""

from __future__ import annotations

from alembic import context

from strongroom.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `strongroom db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
