"""Alembic environment for Strongroom's schema.

Two ways in, one way through:
- ``strongroom db upgrade`` and the server's start (``strongroom.db.migrate``) pass the
  connection to migrate on, in ``config.attributes["connection"]``;
- ``alembic upgrade head`` from a checkout (``alembic.ini`` at its root) migrates the database
  of ``STRONGROOM_DATABASE_URL``, through the same engine set-up as the server.
Both take the migration lock (``strongroom.db.migrate.lock_for_migration``) before Alembic
reads the schema's revision.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from strongroom.db.migrate import lock_for_migration
from strongroom.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        lock_for_migration(connection)
        context.run_migrations()


def _run_from_alembic_command() -> None:
    from strongroom.config import Settings
    from strongroom.db.engine import Database

    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    database = Database.from_url(Settings().database_url)
    try:
        with database.write() as connection:
            _run(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    raise SystemExit("Strongroom's migrations run against a database: --sql is not supported")
passed = context.config.attributes.get("connection")
if passed is not None:
    _run(passed)
else:
    _run_from_alembic_command()
