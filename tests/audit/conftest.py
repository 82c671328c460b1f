"""Fixtures of the audit tests: a migrated SQLite database (journals exist only beside one), and
a migrated, anchored database on each engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.db.engine import Database
from tests.support.audit_chain import anchored
from tests.support.databases import sqlite_copy


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(sqlite_copy(sqlite_template, tmp_path / "strongroom.db"))
    yield anchored(database)
    database.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Database]:
    """A migrated, anchored database on each engine (SQLite, PostgreSQL)."""
    database = Database.from_url(database_url)
    yield anchored(database)
    database.dispose()
