"""Databases for tests: copies of a migrated SQLite template, and PostgreSQL databases made
(and dropped) on the server at 127.0.0.1:5432.

Migrating costs a test tens of milliseconds of Alembic; a file copy costs well under one. So the
suite migrates once per run (a SQLite template file, a PostgreSQL template database) and every
test that wants a fresh database gets a copy of it. A test of migrations themselves, or of the
files a server creates, asks for an empty database instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from strongroom.db import migrate
from strongroom.db.change_feed import APPLICATION_NAME
from strongroom.db.engine import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "STRONGROOM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("STRONGROOM_REQUIRE_POSTGRES") == "1"


def postgres_url(name: str) -> str:
    """The URL of database ``name`` on the test server, as its admin user."""
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def postgres_admin(*, required: bool = REQUIRE_POSTGRES) -> Engine:
    """An engine on the server's admin database; skips the test when the server does not
    answer, or fails it when ``required`` (CI sets STRONGROOM_REQUIRE_POSTGRES=1)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        admin.dispose()
        if required:
            pytest.fail(f"PostgreSQL is required but unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: skipping its half")
    return admin


@contextlib.contextmanager
def new_postgres_database(
    prefix: str, *, template: str | None = None, required: bool = REQUIRE_POSTGRES
) -> Iterator[str]:
    """A new database (empty, or a copy of ``template``) for the block; its name for the URL
    is ``<prefix>_<pid>_<random>``. Dropped at the end, whoever is still connected."""
    admin = postgres_admin(required=required)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    copy_of = f' TEMPLATE "{template}"' if template is not None else ""
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
        try:
            yield name
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def migrated_sqlite_template(folder: Path) -> Path:
    """A SQLite file in ``folder`` at the newest schema, closed (no WAL beside it)."""
    path = folder / "template.db"
    database = Database.from_url(f"sqlite:///{path}")
    try:
        migrate.upgrade(database)
    finally:
        database.dispose()
    return path


def sqlite_copy(template: Path, path: Path) -> str:
    """Copy the migrated ``template`` to ``path`` (owner-only, as the server makes its files)
    and return its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    path.chmod(0o600)
    return f"sqlite:///{path}"


@contextlib.contextmanager
def fresh_database_url(
    kind: str, request: pytest.FixtureRequest, folder: Path, *, migrated: bool = True
) -> Iterator[str]:
    """A fresh database for one test (or one module's server) of ``kind`` "sqlite" or
    "postgres": a copy of the session's migrated template (PostgreSQL's always is).

    ``migrated=False`` leaves the SQLite file for the server to create (``strongroom.db``
    in ``folder``): a test of the files it creates, or of its first migration.
    """
    if kind == "sqlite":
        path = folder / "strongroom.db"
        if not migrated:
            yield f"sqlite:///{path}"
            return
        yield sqlite_copy(request.getfixturevalue("sqlite_template"), path)
        return
    template: str = request.getfixturevalue("postgres_template")
    with new_postgres_database("strongroom_t", template=template) as name:
        yield postgres_url(name)


def end_change_feeds(engine: Engine) -> None:
    """Terminate every change feed's listening connection to ``engine``'s database, as a
    failover or a network cut would (``db/change_feed.py``)."""
    with engine.connect() as connection:
        connection.execute(
            text(
                "select pg_terminate_backend(pid, 5000) from pg_stat_activity "
                "where application_name = :name and datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
