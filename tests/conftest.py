"""Shared fixtures: databases (SQLite and PostgreSQL), apps, clients and admin credentials.

Every test that takes ``database_url`` runs twice: on a fresh SQLite file and on a fresh
PostgreSQL database cloned from a migrated template made once per run on 127.0.0.1:5432.
Without a reachable PostgreSQL the second half is skipped with a message, unless
``STRONGROOM_REQUIRE_POSTGRES=1`` (as in CI), where it fails instead.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.api.app import create_app
from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import bootstrap
from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from strongroom.serving.placement import Placement
from tests.support.moto_world import MotoWorld, moto_world

POSTGRES_ADMIN_URL = os.environ.get(
    "STRONGROOM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("STRONGROOM_REQUIRE_POSTGRES") == "1"


def _postgres_admin() -> Any:
    from sqlalchemy import create_engine

    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoWorld]:
    """moto's STS as a real process with signature checks on (see tests/support/moto_world.py)."""
    yield from moto_world()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database used as the template for each test's fresh copy."""
    from sqlalchemy import text

    from strongroom.db import migrate
    from strongroom.db.engine import Database

    try:
        admin = _postgres_admin()
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: skipping its half")
    name = f"strongroom_tpl_{os.getpid()}_{secrets.token_hex(3)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    database = Database.from_url(url)
    migrate.upgrade(database)
    database.dispose()
    yield name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def fresh_database_url(kind: str, request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """A fresh, empty (but migrated, for PostgreSQL) database: a SQLite file in ``folder``, or
    a PostgreSQL database cloned from the template, dropped at the end."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'strongroom.db'}"
        return
    from sqlalchemy import text

    template: str = request.getfixturevalue("postgres_template")
    name = f"strongroom_t_{os.getpid()}_{secrets.token_hex(4)}"
    admin = _postgres_admin()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty (but migrated, for PostgreSQL) database for one test."""
    with fresh_database_url(request.param, request, tmp_path) as url:
        yield url


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


@dataclass
class Admin:
    access_id: str
    access_key: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Harness:
    app: FastAPI
    client: TestClient
    admin: Admin

    @property
    def services(self) -> Any:
        return self.app.state.services

    def login_key(self, access_id: str, access_key: str) -> str:
        response = self.client.post(
            "/v1/auth/login",
            json={"access_id": access_id, "access_type": "access_key", "access_key": access_key},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def as_token(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_harness(
    make_settings: Callable[..., Settings], master_key: LocalMasterKey
) -> Iterator[Callable[..., Harness]]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> Harness:
        sts_transport = overrides.pop("sts_transport", None)
        clock = overrides.pop("clock", None)
        kwargs: dict[str, Any] = {
            "master_key": master_key,
            "sts_transport": sts_transport,
            "placement": Placement.in_process(audit_journal=overrides.pop("audit_journal", False)),
        }
        if clock is not None:
            kwargs["clock"] = clock
        app = create_app(make_settings(**overrides), **kwargs)
        client = TestClient(app, client=("203.0.113.7", 50000))
        client.__enter__()
        clients.append(client)
        services = app.state.services
        creds = bootstrap(
            services.database, services.keys, AuditWriter(services.database, services.keys.audit)
        )
        harness = Harness(
            app=app, client=client, admin=Admin(creds.access_id, creds.access_key, "")
        )
        harness.admin.token = harness.login_key(creds.access_id, creds.access_key)
        return harness

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
