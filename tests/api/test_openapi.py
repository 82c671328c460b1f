"""``/openapi.json`` says what the server does (SPEC section 5): every response body, the real
error shapes (never FastAPI's 422), the bearer and X-Vault-Token schemes.

The tour calls every operation once the way a client would, successfully, and validates each
real answer against the schema (status documented, body valid against its model, which forbids
fields it does not name). ``tests/fuzz`` does the same with generated input.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis

from strongroom.api.errors import _HTTP_CODES
from strongroom.api.schemas import ErrorCode
from strongroom.errors import StrongroomError
from strongroom.vault.errors import VAULT_PATH_PREFIXES, UnsupportedOperationError
from tests.support.harness import Harness
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

# The operations anyone may call; every other one must list the token schemes.
PUBLIC = {
    "POST /v1/auth/login",
    "POST /v1/auth/aws/login",
    "PUT /v1/auth/aws/login",
    "GET /v1/sys/health",
    "GET /v1/sys/ready",
    "GET /metrics",
}
TOKEN_SCHEMES: list[dict[str, list[str]]] = [{"bearer": []}, {"vaultToken": []}]


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


@pytest.fixture
def document(harness: Harness) -> dict[str, Any]:
    answer = harness.client.get("/openapi.json")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_no_operation_documents_a_422(document: dict[str, Any]) -> None:
    documented = [label for label, op in operations(document) if "422" in op["responses"]]
    assert documented == []
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])
    # ... because bad input really is a 400 in the error shape.
    assert len(list(operations(document))) > 30


def test_every_declared_status_has_a_response_schema(document: dict[str, Any]) -> None:
    for label, operation in operations(document):
        assert any(status.startswith("2") for status in operation["responses"]), label
        for status, response in operation["responses"].items():
            if status == "204":
                assert "content" not in response, label
                continue
            content = response.get("content")
            assert content, f"{label} {status} has no body schema"
            for media_type, body in content.items():
                assert body.get("schema"), f"{label} {status} {media_type} has no schema"


def test_errors_have_the_real_shapes(document: dict[str, Any]) -> None:
    for label, operation in operations(document):
        path = label.split(" ", 1)[1]
        vault = path.startswith(VAULT_PATH_PREFIXES)
        for status, response in operation["responses"].items():
            if int(status) < 400 or label == "GET /v1/sys/ready":
                continue
            schema = response["content"]["application/json"]["schema"]
            expected = "VaultErrors" if vault else "Error"
            assert schema == {"$ref": f"#/components/schemas/{expected}"}, (label, status)
            if status == "429":
                assert response["headers"]["Retry-After"]["required"] is True
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
    assert error["additionalProperties"] is False


def _subclasses(cls: type[StrongroomError]) -> Iterator[type[StrongroomError]]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def test_error_codes_name_every_code_the_server_sends() -> None:
    sent = {StrongroomError.code, *(cls.code for cls in _subclasses(StrongroomError))}
    sent |= set(_HTTP_CODES.values())
    assert UnsupportedOperationError.code in sent
    assert sent - {code.value for code in ErrorCode} == set()


def test_token_schemes_and_who_needs_them(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"bearer", "vaultToken"}
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    vault = schemes["vaultToken"]
    assert (vault["type"], vault["in"], vault["name"]) == ("apiKey", "header", "X-Vault-Token")
    assert "security" not in document  # each operation says so itself
    for label, operation in operations(document):
        if label in PUBLIC:
            assert "security" not in operation, label
        else:
            assert operation["security"] == TOKEN_SCHEMES, label
    assert {label for label, _ in operations(document)} >= PUBLIC


def test_docs_and_the_console_stay_out_of_the_schema(document: dict[str, Any]) -> None:
    paths = set(document["paths"])
    assert not {p for p in paths if p.startswith(("/ui", "/docs", "/redoc", "/openapi"))}


# -- the tour ----------------------------------------------------------------------------


class Tour:
    """Calls operations and checks each answer against the schema; remembers what it saw."""

    def __init__(self, harness: Harness) -> None:
        self.client = harness.client
        self.document = self.client.get("/openapi.json").json()
        self.schema = schemathesis.openapi.from_dict(self.document)
        self.seen: set[str] = set()

    def call(
        self, method: str, template: str, status: int, *, path: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        answer: httpx.Response = self.client.request(method, path or template, **kwargs)
        assert answer.status_code == status, (method, path or template, answer.text[:500])
        operation = self.document["paths"][template][method.lower()]
        assert str(status) in operation["responses"], (method, template, status)
        self.schema[template][method].validate_response(answer)
        self.seen.add(f"{method} {template}")
        return answer

    def every_operation(self) -> set[str]:
        return {label for label, _ in operations(self.document)}


@pytest.fixture
def tour_harness(make_harness: Callable[..., Harness], moto: MotoWorld) -> Harness:
    """AWS logins reach moto (signature checks on) through STRONGROOM_STS_CONNECT_TO."""
    return make_harness(sts_connect_to=[f"sts.amazonaws.com={moto.server.url}"])


def test_every_operation_answers_as_documented(tour_harness: Harness, moto: MotoWorld) -> None:
    tour = Tour(tour_harness)
    admin = tour_harness.admin
    headers = admin.headers

    tour.call("GET", "/v1/sys/health", 200)
    tour.call("GET", "/v1/sys/ready", 200)
    tour.call("GET", "/metrics", 200)
    login = {"access_id": admin.access_id, "access_type": "access_key"}
    token = tour.call(
        "POST", "/v1/auth/login", 200, json={**login, "access_key": admin.access_key}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    tour.call("GET", "/v1/auth/token", 200, headers=headers)

    # Auth methods of both types; the AWS one is what the Vault login below uses.
    key_method = tour.call(
        "POST",
        "/v1/auth-methods",
        201,
        json={"type": "api_key", "name": "ci", "jwt_ttl": 10},
        headers=headers,
    ).json()
    assert key_method["access_key"]
    aws_method = {
        "type": "aws_iam",
        "name": "workload",
        "bound_aws_account_id": ["123456789012"],
        "bound_role_name": ["app-role"],
    }
    tour.call("POST", "/v1/auth-methods", 201, json=aws_method, headers=headers)
    tour.call("GET", "/v1/auth-methods", 200, headers=headers)
    named = "/v1/auth-methods/{name}"
    tour.call("GET", named, 200, path="/v1/auth-methods/workload", headers=headers)
    tour.call(
        "PATCH",
        named,
        200,
        path="/v1/auth-methods/ci",
        json={"description": "the CI", "bound_ips": ["10.0.0.0/8"]},
        headers=headers,
    )

    # A role with a rule and an association.
    tour.call("POST", "/v1/roles", 201, json={"name": "app"}, headers=headers)
    tour.call("GET", "/v1/roles", 200, headers=headers)
    rule = {"path": "/app/*", "capabilities": ["read", "list", "create", "update"], "ttl": 60}
    rules = "/v1/roles/{name}/rules"
    tour.call("PUT", rules, 200, path="/v1/roles/app/rules", json=rule, headers=headers)
    association = tour.call(
        "POST",
        "/v1/roles/{name}/associations",
        201,
        path="/v1/roles/app/associations",
        json={"auth_method": "workload"},
        headers=headers,
    ).json()
    tour.call(
        "POST",
        "/v1/roles/{name}/associations",
        201,
        path="/v1/roles/app/associations",
        json={"auth_method": "ci", "sub_claims": {}},
        headers=headers,
    )
    detail = tour.call("GET", "/v1/roles/{name}", 200, path="/v1/roles/app", headers=headers)
    assert detail.json()["rules"]
    assert detail.json()["associations"]

    # Secrets, natively.
    secret = "/v1/secrets/{name}"
    tour.call(
        "POST",
        "/v1/secrets",
        201,
        json={"name": "/app/db", "value": "pw", "tags": ["db"]},
        headers=headers,
    )
    tour.call("GET", secret, 200, path="/v1/secrets/app/db", headers=headers)
    tour.call("PUT", secret, 200, path="/v1/secrets/app/db", json={"value": "pw2"}, headers=headers)
    tour.call(
        "GET",
        "/v1/secrets/{name}/versions",
        200,
        path="/v1/secrets/app/db/versions",
        headers=headers,
    )
    tour.call("GET", "/v1/items", 200, params={"path": "/app"}, headers=headers)
    tour.call("GET", "/v1/describe-item", 200, params={"name": "/app/db"}, headers=headers)
    tour.call("POST", "/v1/get-secret-value", 200, json={"names": ["/app/db"]}, headers=headers)
    tour.call(
        "DELETE", secret, 204, path="/v1/secrets/app/db", params={"version": 1}, headers=headers
    )
    # Errors, in the native shape.
    tour.call("GET", secret, 404, path="/v1/secrets/app/none", headers=headers)
    tour.call("GET", secret, 401, path="/v1/secrets/app/db")
    tour.call("POST", "/v1/secrets", 400, json={"name": "/app/x"}, headers=headers)

    # Vault: an AWS login (moto), then KV and the token's self-service with X-Vault-Token.
    vault_tokens = [
        tour.call(method, "/v1/auth/aws/login", 200, json={"role": "workload", **sign_fields(moto)})
        for method in ("POST", "PUT")
    ]
    vault = {"X-Vault-Token": vault_tokens[0].json()["auth"]["client_token"]}
    data = "/v1/secret/data/{path}"
    tour.call(
        "POST", data, 200, path="/v1/secret/data/app/kv", json={"data": {"a": "1"}}, headers=vault
    )
    tour.call(
        "PUT",
        data,
        200,
        path="/v1/secret/data/app/kv",
        json={"data": {"a": "2"}, "options": {"cas": 1}},
        headers=vault,
    )
    tour.call("GET", data, 200, path="/v1/secret/data/app/kv", headers=vault)
    tour.call("GET", "/v1/auth/token/lookup-self", 200, headers=vault)
    admin_vault = {"X-Vault-Token": token}
    tour.call("GET", "/v1/secret/metadata", 200, params={"list": "true"}, headers=admin_vault)
    metadata = "/v1/secret/metadata/{path}"
    tour.call(
        "GET", metadata, 200, path="/v1/secret/metadata/app", params={"list": "true"}, headers=vault
    )
    tour.call("GET", metadata, 200, path="/v1/secret/metadata/app/kv", headers=admin_vault)
    tour.call(
        "GET",
        "/v1/sys/internal/ui/mounts/{path}",
        200,
        path="/v1/sys/internal/ui/mounts/secret/app/kv",
        headers=vault,
    )
    tour.call("DELETE", metadata, 204, path="/v1/secret/metadata/app/kv", headers=admin_vault)
    # Errors, in Vault's shape.
    tour.call("GET", data, 404, path="/v1/secret/data/app/kv", headers=vault)
    tour.call("GET", data, 403, path="/v1/secret/data/app/kv")
    tour.call("POST", "/v1/auth/aws/login", 400, json={"role": "workload"})
    tour.call("POST", "/v1/auth/token/revoke-self", 204, headers=vault)
    second = {"X-Vault-Token": vault_tokens[1].json()["auth"]["client_token"]}
    tour.call("PUT", "/v1/auth/token/revoke-self", 204, headers=second)

    tour.call("GET", "/v1/audit", 200, params={"limit": 50}, headers=headers)

    # Removal, and last the admin's own token.
    tour.call(
        "DELETE",
        rules,
        204,
        path="/v1/roles/app/rules",
        params={"path": "/app/*", "rule_type": "item-rule"},
        headers=headers,
    )
    tour.call(
        "DELETE",
        "/v1/roles/{name}/associations/{assoc_id}",
        204,
        path=f"/v1/roles/app/associations/{association['assoc_id']}",
        headers=headers,
    )
    tour.call("DELETE", "/v1/roles/{name}", 204, path="/v1/roles/app", headers=headers)
    tour.call("DELETE", named, 204, path="/v1/auth-methods/ci", headers=headers)
    tour.call("DELETE", "/v1/auth/token", 204, headers=headers)

    assert tour.every_operation() - tour.seen == set()


def sign_fields(moto: MotoWorld) -> dict[str, str]:
    """A freshly signed login: a nonce of its own, as the CLI signs one (two logins signed in
    the same second would otherwise be one signature, and the second a refused replay)."""
    nonce = {"X-Strongroom-Login-Nonce": secrets.token_urlsafe(16)}
    signed = sign_get_caller_identity(moto.app.credentials, extra_headers=nonce)
    return {key: value for key, value in signed.items() if key.startswith("iam_")}
