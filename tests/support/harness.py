"""The one way tests build the app in their own process.

:func:`running_app` calls ``create_app`` with the test's edges and holds its lifespan open for
the block; :func:`bootstrapped` adds the bootstrapped admin, logged in. The fixtures
``make_harness`` and ``harness`` (tests/conftest.py) and the module-wide apps of a few tests
(the OpenAPI fuzzer's) all come through here, so a new edge of ``create_app`` has one place to
go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.api.app import create_app
from strongroom.api.services import Services
from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import bootstrap
from strongroom.config import Settings
from strongroom.crypto import MasterKeyProvider
from strongroom.kit.clock import Clock, utc_now
from strongroom.serving.placement import Placement
from tests.support.login import key_login, key_token

# Requests come from this address (TEST-NET-3), port included, unless a test says otherwise.
CLIENT_ADDRESS = ("203.0.113.7", 50000)


@dataclass
class Admin:
    access_id: str
    access_key: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def login_body(self) -> dict[str, str]:
        return key_login(self.access_id, self.access_key)


@dataclass
class InProcessApp:
    """An app built by :func:`running_app` and a client whose lifespan is entered."""

    app: FastAPI
    client: TestClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def login_key(self, access_id: str, access_key: str) -> str:
        """Log in with an access key; return the token."""
        return key_token(self.client, access_id, access_key)

    @staticmethod
    def as_token(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Harness(InProcessApp):
    """An app with its bootstrapped admin, logged in."""

    admin: Admin


@contextlib.contextmanager
def running_app(
    settings: Settings,
    *,
    master_key: MasterKeyProvider | None = None,
    sts_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = utc_now,
    placement: Placement | None = None,
    client_address: tuple[str, int] = CLIENT_ADDRESS,
) -> Iterator[InProcessApp]:
    """``create_app(settings, …)`` with a TestClient inside its lifespan for the block.

    ``master_key``, ``sts_transport`` and ``clock`` default to what ``settings`` and the system
    give; ``placement`` to :meth:`Placement.in_process`.
    """
    app = create_app(
        settings,
        master_key=master_key,
        sts_transport=sts_transport,
        placement=placement or Placement.in_process(),
        clock=clock,
    )
    with TestClient(app, client=client_address) as client:
        yield InProcessApp(app, client)


def bootstrapped(running: InProcessApp) -> Harness:
    """Bootstrap the app's database (as ``strongroom bootstrap`` does) and log the admin in."""
    services = running.services
    creds = bootstrap(
        services.database, services.keys, AuditWriter(services.database, services.keys.audit)
    )
    token = running.login_key(creds.access_id, creds.access_key)
    return Harness(running.app, running.client, Admin(creds.access_id, creds.access_key, token))
