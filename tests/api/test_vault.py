"""The Vault-compatible surface in the app (SQLite and PostgreSQL): KV v2 semantics, Vault's
error shape, the token headers, the AWS login (replayed to moto with signature checking on,
through STRONGROOM_STS_CONNECT_TO) and the audit trail of every route. The real clients
(hvac, the bao CLI and agent) run against a server process in tests/e2e/test_vault_clients.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.harness import Harness
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

PERMISSION_DENIED = {"errors": ["permission denied"]}
NOT_FOUND: dict[str, list[str]] = {"errors": []}


def vault(token: str) -> dict[str, str]:
    return {"X-Vault-Token": token}


def role_token(harness: Harness, name: str, rules: list[tuple[str, list[str]]]) -> str:
    """Log in through a new api_key auth method whose role holds ``rules``."""
    admin, client = harness.admin.headers, harness.client
    method = client.post(
        "/v1/auth-methods", json={"type": "api_key", "name": f"{name}-key"}, headers=admin
    ).json()
    client.post("/v1/roles", json={"name": name}, headers=admin).raise_for_status()
    for path, capabilities in rules:
        client.put(
            f"/v1/roles/{name}/rules",
            json={"path": path, "capabilities": capabilities},
            headers=admin,
        ).raise_for_status()
    client.post(
        f"/v1/roles/{name}/associations", json={"auth_method": f"{name}-key"}, headers=admin
    ).raise_for_status()
    return harness.login_key(method["access_id"], method["access_key"])


def put(harness: Harness, token: str, path: str, data: Any, **options: Any) -> Any:
    body: dict[str, Any] = {"data": data}
    if options:
        body["options"] = options
    return harness.client.post(f"/v1/secret/data/{path}", json=body, headers=vault(token))


def native_create(harness: Harness, name: str, value: str) -> None:
    harness.client.post(
        "/v1/secrets", json={"name": name, "value": value}, headers=harness.admin.headers
    ).raise_for_status()


def audit_events(harness: Harness, limit: int = 50) -> list[dict[str, Any]]:
    response = harness.client.get(
        "/v1/audit", params={"limit": limit}, headers=harness.admin.headers
    )
    events: list[dict[str, Any]] = response.json()["events"]
    return events


# -- KV version 2 --------------------------------------------------------------------------


def test_kv_versions_round_trip_and_agree_with_the_native_api(harness: Harness) -> None:
    token = harness.admin.token
    first = put(harness, token, "app/db", {"user": "u", "password": "p1"})
    assert first.status_code == 200, first.text
    assert first.json()["data"]["version"] == 1
    assert first.headers["cache-control"] == "no-store"
    second = put(harness, token, "app/db", {"user": "u", "password": "p2"}).json()["data"]
    assert second == {
        "created_time": second["created_time"],
        "custom_metadata": None,
        "deletion_time": "",
        "destroyed": False,
        "version": 2,
    }

    read = harness.client.get("/v1/secret/data/app/db", headers=vault(token))
    assert read.status_code == 200, read.text
    body = read.json()
    assert set(body) >= {"request_id", "lease_id", "renewable", "lease_duration", "data"}
    assert body["data"]["data"] == {"user": "u", "password": "p2"}
    assert body["data"]["metadata"]["version"] == 2
    old = harness.client.get("/v1/secret/data/app/db?version=1", headers=vault(token)).json()
    assert old["data"]["data"]["password"] == "p1"
    current = harness.client.get("/v1/secret/data/app/db?version=0", headers=vault(token)).json()
    assert current["data"]["metadata"]["version"] == 2

    # Written by Vault, read natively: compact JSON text.
    native = harness.client.get("/v1/secrets/app/db", headers=harness.as_token(token)).json()
    assert json.loads(native["value"]) == {"user": "u", "password": "p2"}
    # Written natively: a plain value reads as {"value": …}, a JSON object as itself.
    native_create(harness, "/app/plain", "hunter2")
    native_create(harness, "/app/json", '{"a": 1, "b": [true, null]}')
    native_create(harness, "/app/not-an-object", "[1, 2]")
    for path, data in [
        ("app/plain", {"value": "hunter2"}),
        ("app/json", {"a": 1, "b": [True, None]}),
        ("app/not-an-object", {"value": "[1, 2]"}),
    ]:
        got = harness.client.get(f"/v1/secret/data/{path}", headers=vault(token)).json()
        assert got["data"]["data"] == data

    metadata = harness.client.get("/v1/secret/metadata/app/db", headers=vault(token)).json()
    assert metadata["data"]["current_version"] == 2
    assert metadata["data"]["oldest_version"] == 1
    assert sorted(metadata["data"]["versions"]) == ["1", "2"]

    deleted = harness.client.delete("/v1/secret/metadata/app/db", headers=vault(token))
    assert deleted.status_code == 204
    gone = harness.client.get("/v1/secret/data/app/db", headers=vault(token))
    assert (gone.status_code, gone.json()) == (404, NOT_FOUND)


def test_check_and_set(harness: Harness) -> None:
    token = harness.admin.token
    assert put(harness, token, "cas/a", {"v": 1}, cas=0).status_code == 200  # create-only
    mismatch = {"errors": ["check-and-set parameter did not match the current version"]}
    again = put(harness, token, "cas/a", {"v": 2}, cas=0)
    assert (again.status_code, again.json()) == (400, mismatch)
    assert put(harness, token, "cas/a", {"v": 2}, cas=1).json()["data"]["version"] == 2
    stale = put(harness, token, "cas/a", {"v": 3}, cas=1)
    assert (stale.status_code, stale.json()) == (400, mismatch)
    missing = put(harness, token, "cas/none", {"v": 1}, cas=3)
    assert (missing.status_code, missing.json()) == (400, mismatch)
    value = harness.client.get("/v1/secret/data/cas/a", headers=vault(token)).json()
    assert value["data"]["data"] == {"v": 2}


def test_write_needs_create_for_a_new_key_and_update_for_an_existing_one(
    harness: Harness,
) -> None:
    native_create(harness, "/w/existing", "old")
    creator = role_token(harness, "creator", [("/w/*", ["create"])])
    updater = role_token(harness, "updater", [("/w/*", ["update"])])
    reader = role_token(harness, "reader", [("/w/*", ["read"])])

    assert put(harness, creator, "w/new-1", {"a": "b"}).status_code == 200
    refused = put(harness, creator, "w/existing", {"a": "b"})
    assert (refused.status_code, refused.json()) == (403, PERMISSION_DENIED)

    assert put(harness, updater, "w/existing", {"a": "b"}).json()["data"]["version"] == 2
    refused = put(harness, updater, "w/new-2", {"a": "b"})
    assert (refused.status_code, refused.json()) == (403, PERMISSION_DENIED)

    for path in ("w/existing", "w/new-3"):
        refused = put(harness, reader, path, {"a": "b"})
        assert (refused.status_code, refused.json()) == (403, PERMISSION_DENIED)
    # A missing key the caller may not read is 403, like an existing one (no existence leak).
    for path in ("w/existing", "w/never-written"):
        read = harness.client.get(f"/v1/secret/data/{path}", headers=vault(creator))
        assert (read.status_code, read.json()) == (403, PERMISSION_DENIED)

    reasons = {
        (event["path"], event["reason"])
        for event in audit_events(harness)
        if event["outcome"] == "denied"
    }
    assert (
        "/w/existing",
        "update on item /w/existing not allowed (it exists; create is held)",
    ) in (reasons)
    assert any(path == "/w/new-2" and "create" in (reason or "") for path, reason in reasons)
    assert any(path == "/w/new-3" for path, _ in reasons)


def test_listing_shows_only_what_the_caller_may_list(harness: Harness) -> None:
    for name in ("/team/a", "/team/sub/b", "/team-private/c", "/ops/d"):
        native_create(harness, name, "v")
    token = role_token(harness, "team", [("/team/*", ["read"])])

    listed = harness.client.request("LIST", "/v1/secret/metadata/team", headers=vault(token))
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == {"keys": ["a", "sub/"]}
    slash = harness.client.get("/v1/secret/metadata/team/?list=true", headers=vault(token))
    assert slash.json()["data"] == {"keys": ["a", "sub/"]}
    root = harness.client.request("LIST", "/v1/secret/metadata", headers=vault(token))
    assert root.json()["data"] == {"keys": ["team/"]}
    root = harness.client.get("/v1/secret/metadata/?list=true", headers=vault(token))
    assert root.json()["data"] == {"keys": ["team/"]}
    # Nothing visible below a folder: as Vault answers an empty listing.
    for folder in ("ops", "team-private", "nowhere"):
        hidden = harness.client.request(
            "LIST", f"/v1/secret/metadata/{folder}", headers=vault(token)
        )
        assert (hidden.status_code, hidden.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "the body is not valid JSON"),
        # orjson would store this as an inexact float: refused rather than changed.
        (b'{"data": {"n": 123456789012345678901234567890}}', 400, "beyond 64 bits"),
        (b'{"data": {"n": NaN}}', 400, "NaN is not JSON"),
        (b"[]", 400, "the body must be a JSON object"),
        (b"{}", 400, "no data provided"),
        (b'{"data": "x"}', 400, "data must be a JSON object"),
        (b'{"data": {}, "options": []}', 400, "options must be a JSON object"),
        (b'{"data": {}, "options": {"cas": -1}}', 400, "options.cas must be a whole number"),
        (b'{"data": {}, "options": {"cas": true}}', 400, "options.cas must be a whole number"),
        (b'{"data": {"v": "' + b"x" * 70_000 + b'"}}', 413, "at most 65536 bytes"),
    ],
)
def test_bad_writes_get_vaults_error_shape(
    harness: Harness, body: bytes, status: int, message: str
) -> None:
    response = harness.client.post(
        "/v1/secret/data/bad/x",
        content=body,
        headers={**vault(harness.admin.token), "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert message in error


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/secret/data/a/%2e%2e/b", 400),
        ("GET", "/v1/secret/data/a%20b", 400),
        ("GET", "/v1/secret/data/x?version=abc", 400),
        ("GET", "/v1/secret/data/", 400),
        ("GET", "/v1/secret/metadata", 405),
        ("DELETE", "/v1/secret/data/x", 405),
        ("PATCH", "/v1/secret/data/x", 405),
        ("GET", "/v1/secret/config", 404),
        ("GET", "/v1/secret/subkeys/x", 404),
        ("GET", "/v1/secret/data/%0Ax", 404),
        ("TRACE", "/v1/secret/data/x", 405),
        ("GET", "/v1/auth/aws/login", 405),
        ("GET", "/v1/auth/token/lookup", 404),
    ],
)
def test_unserved_and_malformed_paths(
    harness: Harness, method: str, path: str, status: int
) -> None:
    response = harness.client.request(method, path, headers=vault(harness.admin.token))
    assert response.status_code == status, response.text
    assert set(response.json()) == {"errors"}


def test_native_paths_keep_the_native_error_shape(harness: Harness) -> None:
    for path in ("/v1/nowhere", "/v1/secrets", "/v1/auth/tokens"):
        response = harness.client.get(path, headers=vault(harness.admin.token))
        assert set(response.json()) == {"error", "message"}, path


def test_the_kv_preflight_of_the_clis(harness: Harness) -> None:
    token = harness.admin.token
    for path in ("secret", "secret/", "secret/app/db"):
        mount = harness.client.get(f"/v1/sys/internal/ui/mounts/{path}", headers=vault(token))
        assert mount.status_code == 200, mount.text
        assert mount.json()["data"]["path"] == "secret/"
        assert mount.json()["data"]["options"] == {"version": "2"}
    other = harness.client.get("/v1/sys/internal/ui/mounts/kv/app", headers=vault(token))
    assert (other.status_code, other.json()) == (403, PERMISSION_DENIED)
    anonymous = harness.client.get("/v1/sys/internal/ui/mounts/secret")
    assert (anonymous.status_code, anonymous.json()) == (403, PERMISSION_DENIED)


# -- tokens --------------------------------------------------------------------------------


def test_x_vault_token_is_accepted_wherever_bearer_is(harness: Harness) -> None:
    native_create(harness, "/h/k", "v")
    token = harness.admin.token
    assert harness.client.get("/v1/secrets/h/k", headers=vault(token)).json()["value"] == "v"
    both = {**vault(token), **harness.as_token(token)}
    assert harness.client.get("/v1/secrets/h/k", headers=both).status_code == 200
    assert harness.client.get("/v1/secret/data/h/k", headers=both).status_code == 200


def test_two_different_tokens_in_one_request_are_refused(harness: Harness) -> None:
    """Header confusion: a proxy or a log judging one credential while the server acts on
    the other. Each of the two tokens is valid on its own."""
    native_create(harness, "/h/k", "v")
    other = role_token(harness, "other", [("/h/*", ["read"])])
    headers = {**vault(harness.admin.token), **harness.as_token(other)}
    native = harness.client.get("/v1/secrets/h/k", headers=headers)
    assert native.status_code == 401
    assert native.json()["error"] == "Unauthorized"
    on_vault = harness.client.get("/v1/secret/data/h/k", headers=headers)
    assert (on_vault.status_code, on_vault.json()) == (403, PERMISSION_DENIED)
    repeated = [("x-vault-token", other), ("x-vault-token", harness.admin.token)]
    assert harness.client.get("/v1/secrets/h/k", headers=repeated).status_code == 401


def test_token_lookup_self_and_revoke_self(harness: Harness) -> None:
    token = role_token(harness, "app", [("/app/*", ["read"])])
    lookup = harness.client.get("/v1/auth/token/lookup-self", headers=vault(token))
    assert lookup.status_code == 200, lookup.text
    assert lookup.headers["cache-control"] == "no-store"
    data = lookup.json()["data"]
    assert data["id"] == token
    assert data["policies"] == ["app"]
    assert data["type"] == "service"
    assert data["renewable"] is False
    assert 0 < data["ttl"] <= data["creation_ttl"] == 30 * 60
    assert data["display_name"] == "app-key"

    revoked = harness.client.post("/v1/auth/token/revoke-self", headers=vault(token))
    assert revoked.status_code == 204
    after = harness.client.get("/v1/auth/token/lookup-self", headers=vault(token))
    assert (after.status_code, after.json()) == (403, PERMISSION_DENIED)
    assert harness.client.get("/v1/auth/token/lookup-self").status_code == 403


# -- AWS IAM login -------------------------------------------------------------------------


@pytest.fixture
def iam_harness(make_harness: Callable[..., Harness], moto: MotoWorld) -> Harness:
    """The auth method keeps sts_url https://sts.amazonaws.com; logins reach moto through
    STRONGROOM_STS_CONNECT_TO."""
    harness = make_harness(sts_connect_to=[f"sts.amazonaws.com={moto.server.url}"])
    admin = harness.admin.headers
    harness.client.post(
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "workload",
            "bound_aws_account_id": ["123456789012"],
            "bound_role_name": ["app-role"],
        },
        headers=admin,
    ).raise_for_status()
    harness.client.post("/v1/roles", json={"name": "app"}, headers=admin).raise_for_status()
    harness.client.put(
        "/v1/roles/app/rules", json={"path": "/app/*", "capabilities": ["read"]}, headers=admin
    ).raise_for_status()
    harness.client.post(
        "/v1/roles/app/associations", json={"auth_method": "workload"}, headers=admin
    ).raise_for_status()
    native_create(harness, "/app/db", "pw")
    return harness


def iam_fields(principal_credentials: Any) -> dict[str, str]:
    signed = sign_get_caller_identity(principal_credentials)
    return {key: value for key, value in signed.items() if key.startswith("iam_")}


def test_aws_login_answers_vaults_auth_object(iam_harness: Harness, moto: MotoWorld) -> None:
    harness = iam_harness
    response = harness.client.post(
        "/v1/auth/aws/login", json={"role": "workload", **iam_fields(moto.app.credentials)}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    auth = response.json()["auth"]
    assert auth["client_token"].startswith("t-")
    assert auth["policies"] == auth["token_policies"] == ["app"]
    assert auth["metadata"]["arn"] == moto.app.arn
    assert auth["metadata"]["role_name"] == "app-role"
    assert auth["renewable"] is False
    assert 1790 <= auth["lease_duration"] <= 1800
    assert auth["accessor"] not in ("", auth["client_token"])
    read = harness.client.get("/v1/secret/data/app/db", headers=vault(auth["client_token"]))
    assert read.json()["data"]["data"] == {"value": "pw"}
    events = audit_events(harness, 10)
    login = next(e for e in events if e["action"] == "auth.login")
    assert (login["outcome"], login["auth_method"]) == ("success", "workload")
    assert login["token_digest"] == auth["accessor"]  # the accessor finds its events


def test_aws_login_by_access_id_with_put(iam_harness: Harness, moto: MotoWorld) -> None:
    harness = iam_harness
    methods = harness.client.get("/v1/auth-methods/workload", headers=harness.admin.headers)
    access_id = methods.json()["access_id"]
    response = harness.client.put(
        "/v1/auth/aws/login", json={"role": access_id, **iam_fields(moto.app.credentials)}
    )
    assert response.status_code == 200, response.text


def test_aws_login_failures_are_vaults_400_and_audited_as_denied(
    iam_harness: Harness, moto: MotoWorld
) -> None:
    harness = iam_harness
    fields = iam_fields(moto.app.credentials)
    denied = {"errors": ["access authentication failed"]}
    outside = harness.client.post(
        "/v1/auth/aws/login", json={"role": "workload", **iam_fields(moto.other.credentials)}
    )
    assert (outside.status_code, outside.json()) == (400, denied)
    unknown = harness.client.post("/v1/auth/aws/login", json={"role": "nope", **fields})
    assert (unknown.status_code, unknown.json()) == (400, denied)
    assert (
        harness.client.post("/v1/auth/aws/login", json={"role": "workload", **fields}).status_code
        == 200
    )
    replayed = harness.client.post("/v1/auth/aws/login", json={"role": "workload", **fields})
    assert (replayed.status_code, replayed.json()) == (400, denied)
    reasons = [
        e["reason"]
        for e in audit_events(harness, 10)
        if e["action"] == "auth.login" and e["outcome"] == "denied"
    ]
    assert any("replayed request" in r for r in reasons)
    assert "no auth method named 'nope'" in reasons
    assert any("other-role" in r for r in reasons)


def test_connect_to_changes_nothing_in_check_1(iam_harness: Harness, moto: MotoWorld) -> None:
    """Server-side request forgery: where logins connect is the operator's setting; a request
    signed for that address itself (moto's URL) is still not one for the auth method's sts_url,
    https://sts.amazonaws.com, and is refused before any outbound call."""
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    fields = {key: value for key, value in signed.items() if key.startswith("iam_")}
    response = iam_harness.client.post("/v1/auth/aws/login", json={"role": "workload", **fields})
    assert (response.status_code, response.json()) == (
        400,
        {"errors": ["access authentication failed"]},
    )
    login = next(e for e in audit_events(iam_harness, 5) if e["action"] == "auth.login")
    assert "requests are only sent to sts_url" in login["reason"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Invalid JSON"),
        (b'{"iam_request_url": "eA=="}', "role is required"),
        (b'{"role": "workload", "pkcs7": "MIAG"}', "only IAM logins"),
        (b'{"role": "' + b"r" * 200 + b'"}', "at most 128 characters"),
        (b'{"role": "workload"}', "iam_request_url, iam_request_body and"),
        (b'{"role": "workload", "iam_request_url": "eA=="}', "iam_http_request_method is required"),
    ],
)
def test_malformed_aws_logins(iam_harness: Harness, body: bytes, message: str) -> None:
    response = iam_harness.client.post(
        "/v1/auth/aws/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert message in error


def test_every_vault_route_is_audited(harness: Harness) -> None:
    token = harness.admin.token
    put(harness, token, "au/k", {"a": "b"})
    harness.client.get("/v1/secret/data/au/k", headers=vault(token))
    harness.client.request("LIST", "/v1/secret/metadata/au", headers=vault(token))
    harness.client.get("/v1/secret/metadata/au/k", headers=vault(token))
    harness.client.get("/v1/sys/internal/ui/mounts/secret/au", headers=vault(token))
    harness.client.get("/v1/auth/token/lookup-self", headers=vault(token))
    harness.client.delete("/v1/secret/metadata/au/k", headers=vault(token))
    harness.client.get("/v1/secret/data/au/k", headers=vault("t-unknown"))
    actions = [(e["action"], e["path"], e["status"]) for e in audit_events(harness, 20)]
    for expected in [
        ("secret.create", "/au/k", 201),
        ("secret.read", "/au/k", 200),
        ("item.list", "/au", 200),
        ("secret.versions", "/au/k", 200),
        ("vault.mount.read", None, 200),
        ("auth.token.read", None, 200),
        ("secret.delete", "/au/k", 204),
        ("secret.read", None, 403),
    ]:
        assert expected in actions
    assert '"b"' not in json.dumps(audit_events(harness, 20))
