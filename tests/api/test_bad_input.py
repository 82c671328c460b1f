"""Hostile and malformed input gets a clear 4xx JSON error: never a 500, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.support.harness import Harness


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/secrets", {"name": "/a/../b", "value": "v"}, 400, "InvalidName"),
        ("POST", "/v1/secrets", {"name": "/a//b", "value": "v"}, 400, "InvalidName"),
        ("POST", "/v1/secrets", {"name": "/" + "a" * 129, "value": "v"}, 400, "InvalidName"),
        ("POST", "/v1/secrets", {"name": "/a" * 33, "value": "v"}, 400, "InvalidName"),
        ("POST", "/v1/secrets", {"name": "/a b", "value": "v"}, 400, "InvalidName"),
        (
            "POST",
            "/v1/secrets",
            {"name": "/big", "value": "x" * (64 * 1024 + 1)},
            413,
            "PayloadTooLarge",
        ),
        ("POST", "/v1/secrets", {"name": 5, "value": "v"}, 400, "InvalidRequest"),
        ("POST", "/v1/secrets", {"value": "v"}, 400, "InvalidRequest"),
        ("POST", "/v1/secrets", {"name": "/a", "value": "v", "extra": 1}, 400, "InvalidRequest"),
        ("POST", "/v1/roles", {"name": "has space"}, 400, "InvalidName"),
        ("POST", "/v1/roles", {"name": ".."}, 400, "InvalidName"),
        ("POST", "/v1/auth-methods", {"type": "api_key", "name": "."}, 400, "InvalidName"),
        (
            "PUT",
            "/v1/roles/admin/rules",
            {"path": "/a/../b", "capabilities": ["read"]},
            400,
            "InvalidRequest",
        ),
        (
            "PUT",
            "/v1/roles/admin/rules",
            {"path": "/a", "capabilities": ["fly"]},
            400,
            "InvalidRequest",
        ),
        (
            "PUT",
            "/v1/roles/admin/rules",
            {"path": "/a", "capabilities": ["read"], "rule_type": "x"},
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/v1/auth-methods",
            {"type": "aws_iam", "name": "m", "bound_aws_account_id": ["12"]},
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/v1/auth-methods",
            {"type": "aws_iam", "name": "m", "bound_aws_account_id": []},
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/v1/auth-methods",
            {
                "type": "aws_iam",
                "name": "m",
                "bound_aws_account_id": ["123456789012"],
                "sts_url": "https://evil.example.com",
            },
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/v1/auth-methods",
            {
                "type": "aws_iam",
                "name": "m",
                "bound_aws_account_id": ["123456789012"],
                "bound_ips": ["10.0.0.0/33"],
            },
            400,
            "InvalidRequest",
        ),
        (
            "POST",
            "/v1/auth-methods",
            {
                "type": "aws_iam",
                "name": "m",
                "bound_aws_account_id": ["123456789012"],
                "jwt_ttl": 721,
            },
            400,
            "InvalidRequest",
        ),
        ("POST", "/v1/auth-methods", {"type": "ldap", "name": "m"}, 400, "InvalidRequest"),
        (
            "POST",
            "/v1/roles/admin/associations",
            {"auth_method": "x", "sub_claims": {"colour": ["red"]}},
            400,
            "InvalidRequest",
        ),
        ("POST", "/v1/get-secret-value", {"names": []}, 400, "InvalidRequest"),
        ("POST", "/v1/get-secret-value", {"names": ["/a"] * 101}, 400, "InvalidRequest"),
        ("GET", "/v1/secrets/a?version=0", None, 400, "InvalidRequest"),
        ("GET", "/v1/secrets/a?version=abc", None, 400, "InvalidRequest"),
        ("GET", "/v1/items?path=/a/../b", None, 400, "InvalidName"),
        ("GET", "/v1/no-such-endpoint", None, 404, "NotFound"),
        ("PATCH", "/v1/secrets/a", {}, 405, "MethodNotAllowed"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    harness: Harness, method: str, path: str, body: object, status: int, code: str
) -> None:
    response = harness.client.request(method, path, json=body, headers=harness.admin.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert "Traceback" not in response.text


def test_malformed_json_and_oversized_bodies(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    response = client.post(
        "/v1/secrets", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidRequest"
    huge = client.post(
        "/v1/secrets",
        content=b"x" * (1024 * 1024 + 1),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"] == "PayloadTooLarge"


def test_login_input_validation(harness: Harness) -> None:
    client = harness.client
    for body in (
        {},
        {"access_id": "p-x", "access_type": "password"},
        {"access_id": "p-x" * 20, "access_type": "access_key", "access_key": "k"},
        {"access_id": harness.admin.access_id, "access_type": "access_key"},
    ):
        response = client.post("/v1/auth/login", json=body)
        assert response.status_code == 400, body
    unknown = client.post(
        "/v1/auth/login",
        json={"access_id": "p-000000000000", "access_type": "access_key", "access_key": "k"},
    )
    assert unknown.status_code == 401
    assert unknown.json() == {
        "error": "AuthenticationFailed",
        "message": "access authentication failed",
    }


def test_repeated_failed_logins_are_rate_limited(make_harness: object) -> None:
    harness = make_harness(login_failure_limit=3)  # type: ignore[operator]
    body = {"access_id": harness.admin.access_id, "access_type": "access_key", "access_key": "bad"}
    statuses = [harness.client.post("/v1/auth/login", json=body).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    limited = harness.client.post("/v1/auth/login", json=body)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # The right key is refused too while the source is limited.
    good = {**body, "access_key": harness.admin.access_key}
    assert harness.client.post("/v1/auth/login", json=good).status_code == 429


def test_health_ready_metrics(harness: Harness) -> None:
    client = harness.client
    assert client.get("/v1/sys/health").json() == {"status": "ok"}
    ready = client.get("/v1/sys/ready").json()
    assert ready["status"] == "ok"
    assert ready["checks"] == {"database": "ok", "migrations": "ok", "keys": "ok"}
    metrics = client.get("/metrics").text
    assert "strongroom_http_requests_total" in metrics


def test_metrics_of_several_processes_skip_a_file_still_being_created(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's processes share a metrics folder; a process creates its file before sizing
    it, and a scrape meeting it empty answered 500 (a process starting, or killed then)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    # prometheus_client's own file format, written as another process would (untyped API).
    written = MmapedDict(str(folder / "counter_101.db"))  # type: ignore[no-untyped-call]
    key = mmap_key("strongroom_probe", "strongroom_probe_total", [], [], "a probe")
    written.write_value(key, 3.0, 0.0)  # type: ignore[no-untyped-call]
    written.close()  # type: ignore[no-untyped-call]
    (folder / "counter_102.db").touch()  # a process between creating and sizing its file
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    metrics = harness.client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    assert "strongroom_probe_total 3.0" in metrics.text


@pytest.mark.parametrize(
    ("trusted", "expected"), [("", "203.0.113.7"), ("203.0.113.0/24", "198.51.100.9")]
)
def test_forwarded_for_is_trusted_only_from_configured_proxies(
    make_harness: object, trusted: str, expected: str
) -> None:
    """X-Forwarded-For from an untrusted peer is ignored: a client cannot pick the source
    address that the audit trail, bound_ips and the failed-login counters see."""
    spoofed = {"X-Forwarded-For": "198.51.100.9"}
    body = {"access_id": "p-000000000000", "access_type": "access_key", "access_key": "k"}
    harness = make_harness(trusted_proxies=trusted)  # type: ignore[operator]
    assert harness.client.post("/v1/auth/login", json=body, headers=spoofed).status_code == 401
    events = harness.client.get(
        "/v1/audit", params={"outcome": "denied"}, headers=harness.admin.headers
    ).json()["events"]
    assert events[0]["source_ip"] == expected


def test_oversized_and_malformed_tokens_are_401(harness: Harness) -> None:
    for header in ("Bearer t-" + "a" * 5000, "Bearer " + "x" * 64, "Bearer", "t-abc"):
        response = harness.client.get("/v1/items", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"] == "Unauthorized"
