"""Fixtures of the database tests: a migrated database on each engine (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from strongroom.db import migrate
from strongroom.db.engine import Database


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()
