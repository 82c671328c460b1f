"""Schema migrations with Alembic, applied at server start and by ``strongroom db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from strongroom.db.engine import Database

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``, the newest by default (idempotent)."""
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(database: Database) -> bool:
    return current_revision(database) == head_revision()
