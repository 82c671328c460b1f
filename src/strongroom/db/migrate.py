"""Schema migrations with Alembic, applied at server start and by ``strongroom db upgrade``.

The migration scripts live in the checkout's top-level ``alembic/`` folder; the package reaches
them as ``strongroom/db/migrations`` (a link in the checkout, copied files in a wheel).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from strongroom.db.engine import Database

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


# Any constant shared by every Strongroom process: the key of PostgreSQL's advisory lock.
_MIGRATION_LOCK_KEY = 0x5354524F4E47  # "STRONG"


def lock_for_migration(connection: Connection) -> None:
    """Hold the migration lock until ``connection``'s transaction ends.

    Replicas starting together (or a server and ``strongroom db upgrade``) would otherwise both
    see an old revision and both run its migrations; the second waits here and then finds the
    schema current. On SQLite the write transaction that ``Database.write`` opens (``BEGIN
    IMMEDIATE``) is that lock already.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``, the newest by default (idempotent)."""
    config = _config()
    with database.write() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(database: Database) -> bool:
    return current_revision(database) == head_revision()
