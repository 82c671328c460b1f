"""The operator flow through the REST API: bootstrap → role → rule → association → API key
login → read and list, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.support.harness import Harness


def make_reader(harness: Harness, *, rules: list[dict[str, Any]], name: str = "reader") -> str:
    """An api_key auth method tied to a new role with ``rules``; returns a logged-in token."""
    client, admin = harness.client, harness.admin
    created = client.post(
        "/v1/auth-methods", json={"type": "api_key", "name": f"{name}-key"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    client.post("/v1/roles", json={"name": name}, headers=admin.headers).raise_for_status()
    for rule in rules:
        response = client.put(f"/v1/roles/{name}/rules", json=rule, headers=admin.headers)
        assert response.status_code == 200, response.text
    assoc = client.post(
        f"/v1/roles/{name}/associations",
        json={"auth_method": f"{name}-key"},
        headers=admin.headers,
    )
    assert assoc.status_code == 201, assoc.text
    return harness.login_key(created.json()["access_id"], created.json()["access_key"])


def test_bootstrap_role_rule_login_read_list(harness: Harness) -> None:
    client, admin = harness.client, harness.admin
    for name, value in [("/dev/db-password", "s3cr3t"), ("/dev/app/key", "k"), ("/prod/db", "p")]:
        response = client.post(
            "/v1/secrets", json={"name": name, "value": value}, headers=admin.headers
        )
        assert response.status_code == 201, response.text

    token = make_reader(harness, rules=[{"path": "/dev/*", "capabilities": ["read", "list"]}])
    headers = harness.as_token(token)

    read = client.get("/v1/secrets/dev/db-password", headers=headers)
    assert read.status_code == 200
    assert read.json()["value"] == "s3cr3t"
    assert read.json()["version"] == 1

    assert client.get("/v1/secrets/prod/db", headers=headers).status_code == 403
    # A missing item the caller may not read is a 403 too: nothing leaks about existence.
    assert client.get("/v1/secrets/prod/nothing-here", headers=headers).status_code == 403
    assert client.get("/v1/secrets/dev/nothing-here", headers=headers).status_code == 404

    root = client.get("/v1/items", params={"path": "/"}, headers=headers).json()
    assert root["folders"] == ["/dev"]
    assert root["items"] == []
    dev = client.get("/v1/items", params={"path": "/dev"}, headers=headers).json()
    assert [i["name"] for i in dev["items"]] == ["/dev/db-password"]
    assert dev["folders"] == ["/dev/app"]

    batch = client.post(
        "/v1/get-secret-value", json={"names": ["/dev/db-password", "dev/app/key"]}, headers=headers
    )
    assert batch.json() == {"/dev/db-password": "s3cr3t", "dev/app/key": "k"}
    denied = client.post(
        "/v1/get-secret-value", json={"names": ["/dev/db-password", "/prod/db"]}, headers=headers
    )
    assert denied.status_code == 403

    described = client.get("/v1/auth/token", headers=headers).json()
    assert described["roles"] == ["reader"]


def test_versions_expected_version_and_delete(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "a/b", "value": "one"}, headers=headers)
    assert (
        client.post("/v1/secrets", json={"name": "/a/b", "value": "x"}, headers=headers).status_code
        == 409
    )
    assert (
        client.put("/v1/secrets/a/b", json={"value": "two"}, headers=headers).json()["version"] == 2
    )
    stale = client.put(
        "/v1/secrets/a/b", json={"value": "3", "expected_version": 1}, headers=headers
    )
    assert stale.status_code == 409
    assert (
        client.put("/v1/secrets/a/missing", json={"value": "v"}, headers=headers).status_code == 404
    )
    assert (
        client.get("/v1/secrets/a/b", params={"version": 1}, headers=headers).json()["value"]
        == "one"
    )
    assert client.get("/v1/secrets/a/b", headers=headers).json()["value"] == "two"
    versions = client.get("/v1/secrets/a/b/versions", headers=headers).json()
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert "value" not in str(versions)
    assert (
        client.delete("/v1/secrets/a/b", params={"version": 2}, headers=headers).status_code == 204
    )
    assert client.get("/v1/secrets/a/b", headers=headers).json()["value"] == "one"
    assert client.delete("/v1/secrets/a/b", headers=headers).status_code == 204
    assert client.get("/v1/secrets/a/b", headers=headers).status_code == 404


def test_rule_change_applies_to_live_token_and_dissociation_revokes(harness: Harness) -> None:
    client, admin = harness.client, harness.admin
    client.post("/v1/secrets", json={"name": "/dev/x", "value": "v"}, headers=admin.headers)
    token = make_reader(harness, rules=[{"path": "/dev/*", "capabilities": ["read"]}])
    headers = harness.as_token(token)
    assert client.get("/v1/secrets/dev/x", headers=headers).status_code == 200

    client.put(
        "/v1/roles/reader/rules",
        json={"path": "/dev/x", "capabilities": ["deny"]},
        headers=admin.headers,
    ).raise_for_status()
    assert client.get("/v1/secrets/dev/x", headers=headers).status_code == 403
    client.delete(
        "/v1/roles/reader/rules", params={"path": "/dev/x"}, headers=admin.headers
    ).raise_for_status()
    assert client.get("/v1/secrets/dev/x", headers=headers).status_code == 200

    role = client.get("/v1/roles/reader", headers=admin.headers).json()
    assoc_id = role["associations"][0]["assoc_id"]
    assert (
        client.delete(
            f"/v1/roles/reader/associations/{assoc_id}", headers=admin.headers
        ).status_code
        == 204
    )
    gone = client.get("/v1/secrets/dev/x", headers=headers)
    assert gone.status_code == 401
    assert gone.json()["error"] == "Unauthorized"


def test_deleting_auth_method_revokes_its_tokens(harness: Harness) -> None:
    client, admin = harness.client, harness.admin
    token = make_reader(harness, rules=[{"path": "/*", "capabilities": ["list"]}])
    assert client.get("/v1/items", headers=harness.as_token(token)).status_code == 200
    assert client.delete("/v1/auth-methods/reader-key", headers=admin.headers).status_code == 204
    assert client.get("/v1/items", headers=harness.as_token(token)).status_code == 401


def test_token_revoke_and_unknown_tokens(harness: Harness) -> None:
    client = harness.client
    token = make_reader(harness, rules=[{"path": "/*", "capabilities": ["list"]}])
    assert client.delete("/v1/auth/token", headers=harness.as_token(token)).status_code == 204
    assert client.get("/v1/items", headers=harness.as_token(token)).status_code == 401
    assert client.get("/v1/items").status_code == 401
    assert client.get("/v1/items", headers={"Authorization": "Bearer t-nope"}).status_code == 401
    assert client.get("/v1/items", headers={"Authorization": "Basic abc"}).status_code == 401


def test_no_escalation(harness: Harness) -> None:
    client = harness.client
    token = make_reader(
        harness,
        rules=[
            {"path": "/dev/*", "capabilities": ["read", "list"]},
            {
                "rule_type": "role-rule",
                "path": "/*",
                "capabilities": ["read", "update", "create", "list"],
            },
            {"rule_type": "auth-method-rule", "path": "/reader-key", "capabilities": ["read"]},
        ],
    )
    headers = harness.as_token(token)
    client.post("/v1/roles", json={"name": "other"}, headers=headers).raise_for_status()
    ok = client.put(
        "/v1/roles/other/rules",
        json={"path": "/dev/app/*", "capabilities": ["read"]},
        headers=headers,
    )
    assert ok.status_code == 200
    for rule in (
        {"path": "/*", "capabilities": ["read"]},
        {"path": "/dev/*", "capabilities": ["update"]},
        {"rule_type": "audit-rule", "path": "/", "capabilities": ["read"]},
    ):
        refused = client.put("/v1/roles/other/rules", json=rule, headers=headers)
        assert refused.status_code == 403, rule
    # Only auth methods the caller may read can be associated.
    assert (
        client.post(
            "/v1/roles/other/associations", json={"auth_method": "reader-key"}, headers=headers
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/v1/roles/other/associations",
            json={"auth_method": admin_method(harness)},
            headers=headers,
        ).status_code
        == 403
    )


def admin_method(harness: Harness) -> str:
    methods = harness.client.get("/v1/auth-methods", headers=harness.admin.headers).json()
    return next(
        str(m["name"]) for m in methods["auth_methods"] if m["access_id"] == harness.admin.access_id
    )


def test_filtered_listings_of_methods_and_roles(harness: Harness) -> None:
    client = harness.client
    token = make_reader(
        harness,
        rules=[
            {"rule_type": "role-rule", "path": "/read*", "capabilities": ["list"]},
            {"rule_type": "auth-method-rule", "path": "/reader-*", "capabilities": ["list"]},
        ],
    )
    headers = harness.as_token(token)
    assert [r["name"] for r in client.get("/v1/roles", headers=headers).json()["roles"]] == [
        "reader"
    ]
    names = [
        m["name"] for m in client.get("/v1/auth-methods", headers=headers).json()["auth_methods"]
    ]
    assert names == ["reader-key"]
    assert client.get("/v1/roles/admin", headers=headers).status_code == 403


def test_expiring_rule(make_harness: Any) -> None:
    from datetime import timedelta

    from strongroom.kit.clock import utc_now

    offset = [timedelta(0)]
    harness = make_harness(clock=lambda: utc_now() + offset[0])
    client = harness.client
    client.post("/v1/secrets", json={"name": "/t/x", "value": "v"}, headers=harness.admin.headers)
    token = make_reader(harness, rules=[{"path": "/t/*", "capabilities": ["read"], "ttl": 5}])
    assert client.get("/v1/secrets/t/x", headers=harness.as_token(token)).status_code == 200
    offset[0] = timedelta(minutes=6)
    assert client.get("/v1/secrets/t/x", headers=harness.as_token(token)).status_code == 403
