"""Schema migrations with Alembic, applied at server start and by ``strongroom db upgrade``.

The migration scripts live in the checkout's top-level ``alembic/`` folder; the package reaches
them as ``strongroom/db/migrations`` (a link in the checkout, copied files in a wheel).

Every upgrade runs under the migration lock (:func:`migration_lock`): replicas that start
together on one empty database migrate one after the other, and the later ones find the schema
up to date, instead of racing each other's CREATE TABLE. ``alembic upgrade head`` from a
checkout takes :func:`lock_for_migration` (a lock of its transaction) for the same reason; the
two use different keys, so a server holding the first never waits on itself for the second.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text

from strongroom.db.engine import Database
from strongroom.kit.private_files import private_opener

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")
# pg_advisory_lock key of the migration lock: "strm" in ASCII, any value no one else uses.
MIGRATION_LOCK_KEY = 0x7374726D


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


@contextmanager
def migration_lock(database: Database) -> Iterator[None]:
    """Hold the database's migration lock: a session-level advisory lock on PostgreSQL (on a
    connection of its own, released when the block ends or the connection drops), an flock on
    ``<database>.migrate-lock`` beside a SQLite file. Not reentrant: migrate inside it with
    ``upgrade(..., lock=False)``."""
    if database.dialect == "postgresql":
        with database.engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            connection.commit()
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                connection.commit()
        return
    path = database.engine.url.database
    if database.dialect != "sqlite" or not path or path == ":memory:":
        yield
        return
    # 0600 (an explicit mode, whatever the umask): anyone who can open the lock file can flock
    # it, and hold every server of this database from starting for as long as they like.
    with open(path + ".migrate-lock", "a+b", opener=private_opener) as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def upgrade(database: Database, revision: str = "head", *, lock: bool = True) -> None:
    """Bring the schema to ``revision``, the newest by default (idempotent), under the
    migration lock (``lock=False``: the caller holds it)."""
    if lock:
        with migration_lock(database):
            upgrade(database, revision, lock=False)
        return
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


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this version's migrations (a newer version's is not)."""
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False
