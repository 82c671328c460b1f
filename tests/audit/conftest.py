"""Fixtures of the audit tests: a migrated SQLite database (journals exist only beside one)."""

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
