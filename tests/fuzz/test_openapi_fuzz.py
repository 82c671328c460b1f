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
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from tests.support.databases import sqlite_copy
from tests.support.harness import Harness, bootstrapped, running_app

pytestmark = pytest.mark.slow

Case = schemathesis.Case[Any]

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
    harness: Harness
    token: str  # the admin's, for every case but those of REVOKING

    def fresh_token(self) -> str:
        admin = self.harness.admin
        return self.harness.login_key(admin.access_id, admin.access_key)


@pytest.fixture(scope="module")
def target(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    database_url = sqlite_copy(sqlite_template, tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    settings = Settings(database_url=database_url, master_key=key, log_format="console")
    with running_app(settings, master_key=LocalMasterKey.from_base64(key)) as running:
        harness = bootstrapped(running)
        yield FuzzTarget(harness, harness.admin.token)


def _conform(
    target: FuzzTarget,
    examples: int,
    headers: Callable[[Case], dict[str, str]],
    validate: Callable[[Case, dict[str, str]], None],
) -> None:
    """Run ``validate`` on ``examples`` generated cases of every operation; fail with every
    operation that failed, each with its first failure."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.harness.app)
    failures: dict[str, str] = {}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has an invalid operation: {result.err()}"
        operations.append(result.ok())
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
        def conforms(case: Case) -> None:
            validate(case, headers(case))

        try:
            conforms()
        except (Exception, BaseExceptionGroup) as exc:
            failures[operation.label] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def _token_headers(target: FuzzTarget) -> Callable[[Case], dict[str, str]]:
    # Both schemes, with the same token (the server takes that): left out, one would be
    # generated, a random credential beside the real one.
    def headers(case: Case) -> dict[str, str]:
        token = target.fresh_token() if case.operation.label in REVOKING else target.token
        return {"Authorization": f"Bearer {token}", "X-Vault-Token": token}

    return headers


def test_responses_match_the_schema_with_a_token(target: FuzzTarget) -> None:
    def validate(case: Case, headers: dict[str, str]) -> None:
        case.call_and_validate(headers=headers, checks=[*CONFORMANCE, ignored_auth])

    _conform(target, 25, _token_headers(target), validate)


def test_responses_match_the_schema_without_a_token(target: FuzzTarget) -> None:
    def validate(case: Case, headers: dict[str, str]) -> None:
        response = case.call_and_validate(headers=headers, checks=CONFORMANCE)
        # Without a token nothing that needs one succeeds (bad input may be refused first).
        if case.operation.definition.raw.get("security"):
            assert response.status_code >= 400, response.text[:300]

    _conform(target, 8, lambda _case: {}, validate)
