"""Shared fixtures: databases (SQLite and PostgreSQL), apps, clients and admin credentials.

Every test that takes ``database_url`` runs twice: on a fresh SQLite file and on a fresh
PostgreSQL database on 127.0.0.1:5432, each a copy of a template migrated once per run
(tests/support/databases.py). Without a reachable PostgreSQL the second half is skipped with a
message, unless ``STRONGROOM_REQUIRE_POSTGRES=1`` (as in CI), where it fails instead.

Apps in the test's own process come from tests/support/harness.py: ``make_harness`` here,
``running_app`` (and ``bootstrapped``) where a fixture needs another scope.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from strongroom.db import migrate
from strongroom.db.engine import Database
from strongroom.kit.clock import Clock, utc_now
from strongroom.serving.placement import Placement
from tests.support.databases import (
    fresh_database_url,
    migrated_sqlite_template,
    new_postgres_database,
    postgres_url,
)
from tests.support.harness import Harness, bootstrapped, running_app
from tests.support.moto_world import MotoWorld, moto_world


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoWorld]:
    """moto's STS as a real process with signature checks on (see tests/support/moto_world.py)."""
    yield from moto_world()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; tests get copies of it (``sqlite_copy``)."""
    return migrated_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template for each test's fresh copy."""
    with new_postgres_database("strongroom_tpl") as name:
        database = Database.from_url(postgres_url(name))
        try:
            migrate.upgrade(database)
        finally:
            database.dispose()
        yield name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test, migrated: a copy of the run's template."""
    with fresh_database_url(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The test's fresh database (on SQLite, then on PostgreSQL), opened."""
    database = Database.from_url(database_url)
    yield database
    database.dispose()


@pytest.fixture
def master_key_b64() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def master_key(master_key_b64: str) -> LocalMasterKey:
    return LocalMasterKey.from_base64(master_key_b64)


@pytest.fixture
def make_settings(database_url: str, master_key_b64: str) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "master_key": master_key_b64,
            "log_format": "console",
        }
        values.update(overrides)
        return Settings(**values)

    return build


class MakeHarness:
    """``make_harness(**settings)``: the app on the test's database, bootstrapped, with the
    admin logged in; the edges of ``create_app`` as keyword arguments too. Each call builds
    another app on the same database and settings maker; all are shut down after the test."""

    def __init__(self, make_settings: Callable[..., Settings], master_key: LocalMasterKey) -> None:
        self._make_settings = make_settings
        self._master_key = master_key
        self._apps = contextlib.ExitStack()

    def __call__(
        self,
        *,
        sts_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utc_now,
        placement: Placement | None = None,
        **settings: Any,
    ) -> Harness:
        running = running_app(
            self._make_settings(**settings),
            master_key=self._master_key,
            sts_transport=sts_transport,
            clock=clock,
            placement=placement,
        )
        return bootstrapped(self._apps.enter_context(running))

    def close(self) -> None:
        self._apps.close()


@pytest.fixture
def make_harness(
    make_settings: Callable[..., Settings], master_key: LocalMasterKey
) -> Iterator[MakeHarness]:
    maker = MakeHarness(make_settings, master_key)
    yield maker
    maker.close()


@pytest.fixture
def harness(make_harness: MakeHarness) -> Harness:
    return make_harness()
