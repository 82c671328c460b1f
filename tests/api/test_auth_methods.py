"""Auth method CRUD: validation, the STS URL allowlist, PATCH semantics, access limits."""

from __future__ import annotations

import re
from typing import Any

from tests.support.harness import Harness

AWS = {
    "type": "aws_iam",
    "name": "iamAuth1",
    "bound_aws_account_id": ["123456789012"],
    "bound_role_name": ["app-role"],
}


def test_create_show_patch_delete_aws_iam(make_harness: Any) -> None:
    harness: Harness = make_harness(sts_extra_endpoints="http://127.0.0.1:9999")
    client, headers = harness.client, harness.admin.headers
    created = client.post("/v1/auth-methods", json=AWS, headers=headers)
    assert created.status_code == 201
    access_id = created.json()["access_id"]
    assert re.fullmatch(r"p-[a-z0-9]{12}", access_id)
    assert "access_key" not in created.json()
    shown = client.get("/v1/auth-methods/iamAuth1", headers=headers).json()
    assert shown["sts_url"] == "https://sts.amazonaws.com"
    assert shown["bound_role_name"] == ["app-role"]
    assert shown["access_id"] == access_id

    patched = client.patch(
        "/v1/auth-methods/iamAuth1",
        json={"bound_role_name": ["web-*"], "sts_url": "http://127.0.0.1:9999", "jwt_ttl": 15},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["bound_role_name"] == ["web-*"]
    assert patched.json()["bound_aws_account_id"] == ["123456789012"]
    assert patched.json()["jwt_ttl"] == 15
    assert (
        client.patch(
            "/v1/auth-methods/iamAuth1", json={"sts_url": "http://127.0.0.1:1"}, headers=headers
        ).status_code
        == 400
    )
    assert client.post("/v1/auth-methods", json=AWS, headers=headers).status_code == 409
    assert client.delete("/v1/auth-methods/iamAuth1", headers=headers).status_code == 204
    assert client.get("/v1/auth-methods/iamAuth1", headers=headers).status_code == 404


def test_regional_and_china_sts_urls_are_allowed(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    for i, url in enumerate(
        ("https://sts.eu-west-1.amazonaws.com", "https://sts.cn-north-1.amazonaws.com.cn/")
    ):
        body = {**AWS, "name": f"m{i}", "sts_url": url}
        assert client.post("/v1/auth-methods", json=body, headers=headers).status_code == 201
    for url in (
        "http://sts.amazonaws.com",
        "https://sts.amazonaws.com.evil.example",
        "https://user@sts.amazonaws.com",
        "https://sts.amazonaws.com/?x=1",
        "https://169.254.169.254",
    ):
        body = {**AWS, "name": "bad", "sts_url": url}
        response = client.post("/v1/auth-methods", json=body, headers=headers)
        assert response.status_code == 400, url


def test_api_key_method_limits(make_harness: Any) -> None:
    harness: Harness = make_harness()
    client, headers = harness.client, harness.admin.headers
    created = client.post(
        "/v1/auth-methods",
        json={"type": "api_key", "name": "ci", "bound_ips": ["10.0.0.0/8"], "jwt_ttl": 5},
        headers=headers,
    ).json()
    login = {
        "access_id": created["access_id"],
        "access_type": "access_key",
        "access_key": created["access_key"],
    }
    # The test client calls from 203.0.113.7, outside bound_ips.
    assert client.post("/v1/auth/login", json=login).status_code == 401
    client.patch(
        "/v1/auth-methods/ci", json={"bound_ips": ["203.0.113.0/24"]}, headers=headers
    ).raise_for_status()
    ok = client.post("/v1/auth/login", json=login)
    assert ok.status_code == 200
    assert 295 <= ok.json()["expires_in"] <= 300
    client.patch(
        "/v1/auth-methods/ci", json={"access_expires": "2001-01-01T00:00:00Z"}, headers=headers
    ).raise_for_status()
    assert client.post("/v1/auth/login", json=login).status_code == 401
    # An api_key method refuses an aws_iam login whatever it carries: its type decides first.
    assert (
        client.post("/v1/auth/login", json={**login, "access_type": "aws_iam"}).status_code == 401
    )
