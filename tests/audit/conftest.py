"""Fixtures of the audit tests: a migrated SQLite database (journals exist only beside one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.db import migrate
from strongroom.db.engine import Database
from tests.support.audit_chain import anchored


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'strongroom.db'}")
    migrate.upgrade(database)
    yield anchored(database)
    database.dispose()
