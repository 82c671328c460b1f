"""A bounded OpenAPI fuzz run (schemathesis) over every endpoint: no input yields a 5xx.

The app runs in-process on a fresh SQLite database with an admin token, so the fuzzer reaches
past authentication into every handler; a second pass runs without a token.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from strongroom.api.app import create_app
from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import bootstrap
from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from strongroom.vault.errors import VAULT_PATH_PREFIXES

pytestmark = pytest.mark.slow


def _build_app(tmp: Path) -> tuple[object, str]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp / 'fuzz.db'}", master_key=key, log_format="console"),
        master_key=LocalMasterKey.from_base64(key),
    )
    services = app.state.services
    creds = bootstrap(
        services.database, services.keys, AuditWriter(services.database, services.keys.audit)
    )
    from fastapi.testclient import TestClient

    # No `with`: the app must not go through its lifespan shutdown before the fuzzer uses it.
    token = (
        TestClient(app)
        .post(
            "/v1/auth/login",
            json={
                "access_id": creds.access_id,
                "access_type": "access_key",
                "access_key": creds.access_key,
            },
        )
        .json()["token"]
    )
    return app, token


_TMP = Path(__import__("tempfile").mkdtemp(prefix="strongroom-fuzz-"))
APP, TOKEN = _build_app(_TMP)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def _no_server_error(case: schemathesis.Case, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    # The Vault-compatible routes (SPEC section 10) answer errors in Vault's shape.
    if case.path.startswith(VAULT_PATH_PREFIXES):
        if response.status_code >= 400:
            errors = response.json()["errors"]
            assert all(isinstance(error, str) for error in errors), errors
    elif response.status_code >= 400 and response.status_code != 405:
        body = response.json()
        assert set(body) == {"error", "message"}, body


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_with_admin_token(case: schemathesis.Case) -> None:
    _no_server_error(case, {"Authorization": f"Bearer {TOKEN}"})


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_5xx_without_token(case: schemathesis.Case) -> None:
    _no_server_error(case, {})
