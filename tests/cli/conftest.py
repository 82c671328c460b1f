"""Fixtures for the CLI tests: one moto STS and one real server process per session.

aws        moto_server with signature checks on; app-role and other-role assumed as an EC2
           instance would (session name = instance ID)
server     ``strongroom server`` on a loopback port (SQLite), started with
           STRONGROOM_STS_EXTRA_ENDPOINTS=<moto>, bootstrapped; ``server.admin`` calls the
           REST API directly for set-up and for counting logins in the audit trail
cli        the installed ``strongroom`` executable as a subprocess, with its own
           STRONGROOM_HOME and no AWS credentials unless a test passes some
invoke     the same commands in-process (typer's CliRunner), for the many fast tests
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from strongroom.cli.main import app
from tests.e2e.server_process import STRONGROOM, ServerProcess
from tests.support.login import key_token
from tests.support.moto_sts import MotoPrincipal, MotoServer

INSTANCE_ID = "i-0abc1234567890def"
ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class AwsWorld:
    """moto with signature checks on, and two roles assumed as instance INSTANCE_ID."""

    moto: MotoServer
    app: MotoPrincipal  # role app-role
    other: MotoPrincipal  # role other-role

    @property
    def url(self) -> str:
        return self.moto.url


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsWorld]:
    with MotoServer() as moto:
        app_role = moto.create_role("app-role")
        other_role = moto.create_role("other-role")
        moto.enable_signature_checks()
        yield AwsWorld(
            moto=moto,
            app=moto.assume_role(app_role, INSTANCE_ID),
            other=moto.assume_role(other_role, INSTANCE_ID),
        )


class AdminApi:
    """The REST API as the bootstrap admin, for set-up and inspection (not under test)."""

    def __init__(self, url: str, access_id: str, access_key: str) -> None:
        self.access_id = access_id
        self.access_key = access_key
        self.http = httpx.Client(base_url=url, timeout=30)
        token = key_token(self.http, access_id, access_key)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    def api_key_method(self, name: str, role: str | None = None) -> tuple[str, str]:
        """An api_key auth method (associated with ``role`` if given): (access_id, key)."""
        created = self.call("POST", "/v1/auth-methods", json={"type": "api_key", "name": name})
        if role is not None:
            self.call("POST", f"/v1/roles/{role}/associations", json={"auth_method": name})
        return created["access_id"], created["access_key"]

    def logins(self, access_id: str) -> int:
        """How many logins (successful or not) the audit trail has for ``access_id``."""
        events = self.call("GET", "/v1/audit", params={"access_id": access_id, "limit": 1000})[
            "events"
        ]
        return sum(1 for event in events if event["action"] == "auth.login")

    def close(self) -> None:
        self.http.close()


@dataclass
class RunningServer:
    process: ServerProcess
    admin: AdminApi

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="session")
def server(aws: AwsWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("cli-server")
    process = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'strongroom.db'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_STS_EXTRA_ENDPOINTS": aws.url,
            "STRONGROOM_LOG_FORMAT": "json",
            # Many tests fail logins on purpose from 127.0.0.1; keep the 429 brake out of the way.
            "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
        },
        cwd=root,
    )
    credentials = process.bootstrap()
    process.start()
    admin = AdminApi(process.url, credentials["access_id"], credentials["access_key"])
    try:
        yield RunningServer(process, admin)
    finally:
        admin.close()
        process.stop()


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without AWS or Strongroom settings, plus ``extra``.

    AWS shared files point at nothing and instance metadata is off, so botocore finds exactly
    the credentials a test gives it.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "STRONGROOM_"))
    }
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env |= dict(extra or {})
    return env


@dataclass
class Cli:
    """Runs the installed executable with STRONGROOM_HOME=``home``."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRONGROOM, *args],
            env=clean_environ({"STRONGROOM_HOME": str(self.home), **self.env, **(env or {})}),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@dataclass
class Invoker:
    """Runs commands in-process against the same code, with a clean environment."""

    home: Path
    monkeypatch: pytest.MonkeyPatch
    env: dict[str, str] = field(default_factory=dict)  # for every call of this invoker
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
    ) -> Any:
        for key in list(os.environ):
            if key.startswith(("AWS_", "STRONGROOM_")):
                self.monkeypatch.delenv(key)
        base = clean_environ({"STRONGROOM_HOME": str(self.home), **self.env, **(env or {})})
        changed = {key: value for key, value in base.items() if os.environ.get(key) != value}
        return self.runner.invoke(app, list(args), env=changed, input=stdin, catch_exceptions=False)

    def configure_key(self, access_id: str, access_key: str, server_url: str, *more: str) -> Any:
        """``configure`` a profile that logs in with an access key (``more``: its other
        options, e.g. ``--profile NAME``)."""
        return self(
            "configure",
            "--access-id",
            access_id,
            "--access-type",
            "access_key",
            "--access-key",
            access_key,
            "--server-url",
            server_url,
            *more,
        )


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoker:
    return Invoker(tmp_path / "home", monkeypatch)
