"""A bounded OpenAPI fuzz run (schemathesis) over every operation in ``/openapi.json``.

Every real response must be what the schema says (SPEC section 5): no 5xx, a documented status,
the documented content type and headers, and a body that validates against the documented
model (response models forbid fields they do not name, so a body that grew a field fails too).
Operations that list a security scheme must refuse a request without a valid token.

The app runs in-process on a fresh SQLite database with an admin token, so the fuzzer reaches
past authentication into every handler (as ``Authorization: Bearer`` and ``X-Vault-Token``
both); a second pass runs without a token.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strongroom.api.app import create_app
from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import bootstrap
from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey

pytestmark = pytest.mark.slow

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# Operations that revoke the token they are called with: each case gets a token of its own,
# or the first would leave every later case of the run at 401.
REVOKING = frozenset(
    {
        "DELETE /v1/auth/token",
        "POST /v1/auth/token/revoke-self",
        "PUT /v1/auth/token/revoke-self",
    }
)


@dataclass(frozen=True)
class FuzzTarget:
    app: FastAPI
    client: TestClient
    access_id: str
    access_key: str
    token: str

    def fresh_token(self) -> str:
        answer = self.client.post(
            "/v1/auth/login",
            json={
                "access_id": self.access_id,
                "access_type": "access_key",
                "access_key": self.access_key,
            },
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    database = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    app = create_app(
        Settings(database_url=f"sqlite:///{database}", master_key=key, log_format="console"),
        master_key=LocalMasterKey.from_base64(key),
    )
    services = app.state.services
    creds = bootstrap(
        services.database, services.keys, AuditWriter(services.database, services.keys.audit)
    )
    with TestClient(app) as client:
        target = FuzzTarget(app, client, creds.access_id, creds.access_key, token="")
        yield FuzzTarget(app, client, creds.access_id, creds.access_key, target.fresh_token())


def _conform(
    target: FuzzTarget,
    examples: int,
    headers: Callable[[schemathesis.Case], dict[str, str]],
    validate: Callable[[schemathesis.Case, dict[str, str]], None],
) -> None:
    """Run ``validate`` on ``examples`` generated cases of every operation; fail with every
    operation that failed, each with its first failure."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the schema lost its operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: schemathesis.Case) -> None:
            validate(case, headers(case))

        try:
            conforms()
        except (Exception, BaseExceptionGroup) as exc:
            failures[operation.label] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def _token_headers(target: FuzzTarget) -> Callable[[schemathesis.Case], dict[str, str]]:
    # Both schemes, with the same token (the server takes that): left out, one would be
    # generated, a random credential beside the real one.
    def headers(case: schemathesis.Case) -> dict[str, str]:
        token = target.fresh_token() if case.operation.label in REVOKING else target.token
        return {"Authorization": f"Bearer {token}", "X-Vault-Token": token}

    return headers


def test_responses_match_the_schema_with_a_token(target: FuzzTarget) -> None:
    def validate(case: schemathesis.Case, headers: dict[str, str]) -> None:
        case.call_and_validate(headers=headers, checks=[*CONFORMANCE, ignored_auth])

    _conform(target, 25, _token_headers(target), validate)


def test_responses_match_the_schema_without_a_token(target: FuzzTarget) -> None:
    def validate(case: schemathesis.Case, headers: dict[str, str]) -> None:
        response = case.call_and_validate(headers=headers, checks=CONFORMANCE)
        # Without a token nothing that needs one succeeds (bad input may be refused first).
        if case.operation.definition.raw.get("security"):
            assert response.status_code >= 400, response.text[:300]

    _conform(target, 8, lambda _case: {}, validate)
