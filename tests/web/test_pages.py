"""The console over the in-process app (SQLite and PostgreSQL): sign-in and session edge cases,
cookie flags behind HTTPS, open redirects, error pages for bad input, and the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from strongroom.web.headers import CONTENT_SECURITY_POLICY
from tests.support.harness import Harness

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FIELD_ERROR = re.compile(r'<p class="field-error" id="f-([a-z_]+)-error">([^<]*)</p>')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, access_id: str, access_key: str, next_path: str = "") -> str:
    """Sign in through the form; return the CSRF token of the session's forms."""
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login",
        data={
            "csrf": csrf_of(form.text),
            "access_id": access_id,
            "access_key": access_key,
            "next": next_path,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/ui/secrets").text)


def test_cookies_are_secure_behind_https(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(behind_https=True)
    client = TestClient(harness.app, base_url="https://testserver")
    form = client.get("/ui/login")
    assert "Secure" in form.headers["set-cookie"]
    answer = client.post(
        "/ui/login",
        data={
            "csrf": csrf_of(form.text),
            "access_id": harness.admin.access_id,
            "access_key": harness.admin.access_key,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    (session,) = [c for c in answer.headers.get_list("set-cookie") if "strongroom_session=" in c]
    flags = {part.strip().lower() for part in session.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/ui", "max-age=1800"} <= flags


def test_cookies_are_not_secure_over_plain_http(harness: Harness) -> None:
    form = harness.client.get("/ui/login")
    assert "secure" not in form.headers["set-cookie"].lower()


def test_sign_in_needs_the_forms_nonce_cookie(harness: Harness) -> None:
    client = harness.client
    token = csrf_of(client.get("/ui/login").text)
    client.cookies.clear()  # a forged sign-in from another site carries no cookie
    answer = client.post(
        "/ui/login",
        data={
            "csrf": token,
            "access_id": harness.admin.access_id,
            "access_key": harness.admin.access_key,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "strongroom_session=" not in answer.headers.get("set-cookie", "")
    assert "This sign-in form has expired" in answer.text


@pytest.mark.parametrize(
    ("next_path", "landing"),
    [
        ("/ui/roles", "/ui/roles"),
        ("//evil.example/ui/", "/ui/secrets"),
        ("https://evil.example/", "/ui/secrets"),
        ("/ui/../v1/audit", "/ui/secrets"),
        ("/ui//evil.example", "/ui/secrets"),
        ("/v1/secrets", "/ui/secrets"),
    ],
)
def test_sign_in_returns_only_to_console_paths(
    harness: Harness, next_path: str, landing: str
) -> None:
    client = harness.client
    form = client.get("/ui/login", params={"next": next_path})
    answer = client.post(
        "/ui/login",
        data={
            "csrf": csrf_of(form.text),
            "access_id": harness.admin.access_id,
            "access_key": harness.admin.access_key,
            "next": next_path,
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == landing


def test_failed_sign_in_says_nothing_specific_and_is_audited(harness: Harness) -> None:
    client = harness.client
    answer = client.post(
        "/ui/login",
        data={
            "csrf": csrf_of(client.get("/ui/login").text),
            "access_id": harness.admin.access_id,
            "access_key": "wrong-key",
        },
    )
    assert answer.status_code == 401
    assert "Access authentication failed" in answer.text
    assert "wrong-key" not in answer.text
    events = client.get(
        "/v1/audit", params={"outcome": "denied"}, headers=harness.admin.headers
    ).json()["events"]
    assert any(e["action"] == "auth.login" and "access key" in e["reason"] for e in events)


def test_a_revoked_session_leads_back_to_sign_in(harness: Harness) -> None:
    client = harness.client
    sign_in(client, harness.admin.access_id, harness.admin.access_key)
    token = client.cookies.get("strongroom_session")
    assert token
    revoked = client.delete("/v1/auth/token", headers=harness.as_token(token))
    assert revoked.status_code == 204
    answer = client.get("/ui/roles", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Froles&expired=1"
    assert "Max-Age=0" in answer.headers["set-cookie"]


def test_validation_errors_sit_beside_their_fields_in_the_apis_words(harness: Harness) -> None:
    client = harness.client
    csrf = sign_in(client, harness.admin.access_id, harness.admin.access_key)
    bad = {"name": "has space", "bound_aws_account_id": "1234", "bound_ips": "10.0.0.300/8"}
    page = client.post("/ui/auth-methods/new/aws-iam", data={"csrf": csrf, **bad})
    assert page.status_code == 400
    errors = dict(FIELD_ERROR.findall(page.text))
    assert set(errors) == {"name", "bound_aws_account_id", "bound_ips"}
    api = client.post(
        "/v1/auth-methods",
        json={"type": "aws_iam", "name": "ok", "bound_aws_account_id": ["1234"]},
        headers=harness.admin.headers,
    )
    assert api.status_code == 400
    assert errors["bound_aws_account_id"] in api.json()["message"]
    assert 'value="has space"' in page.text  # the form keeps what was typed

    rule = client.post("/ui/roles/new", data={"csrf": csrf, "name": "r1"}, follow_redirects=False)
    assert rule.status_code == 303
    page = client.post(
        "/ui/roles/r1/rules",
        data={"csrf": csrf, "path": "/dev/../x", "capabilities": ["read"]},
    )
    assert page.status_code == 400
    assert "a rule path has no &#39;.&#39; or &#39;..&#39; segments" in page.text


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/ui/secrets?path=/a/../b", None),
        ("GET", "/ui/secrets?path=" + "a/" * 400, None),
        ("GET", "/ui/secrets/item", None),
        ("GET", "/ui/secrets/item?name=%00", None),
        ("GET", "/ui/secrets/item?name=/missing", None),
        ("GET", "/ui/roles/" + "x" * 300, None),
        ("GET", "/ui/roles/missing", None),
        ("GET", "/ui/auth-methods/new/ldap", None),
        ("GET", "/ui/auth-methods/bad%20name", None),
        ("GET", "/ui/audit?limit=abc&outcome=nope", None),
        ("GET", "/ui/audit?access_id=" + "p" * 100, None),
        ("POST", "/ui/secrets/reveal", {"name": "/dev/x", "version": "-1"}),
        ("POST", "/ui/secrets/reveal", {"name": "/dev/x", "version": "99999999999999999999"}),
        ("POST", "/ui/secrets/delete", {"name": "", "version": "abc"}),
        ("POST", "/ui/secrets/new", {"name": "/x", "value": "v" * 70_000}),
        ("POST", "/ui/secrets/new", {"name": "", "value": ""}),
        ("POST", "/ui/secrets/update", {"name": "/nope", "value": "x"}),
        ("POST", "/ui/roles/new", {"name": "\u2603"}),
        ("POST", "/ui/roles/missing/rules", {"path": "/x", "capabilities": "read"}),
        ("POST", "/ui/roles/missing/associations", {"auth_method": "x", "sub_claims": "novalue"}),
        ("POST", "/ui/roles/missing/associations/zz/delete", {}),
        ("POST", "/ui/auth-methods/new/api-key", {"name": "k", "jwt_ttl": "9999"}),
        ("POST", "/ui/auth-methods/new/aws-iam", {"name": "k", "access_expires": "tomorrow"}),
        ("POST", "/ui/auth-methods/missing/edit", {"kind": "aws_iam"}),
        ("POST", "/ui/secrets", {}),
        ("DELETE", "/ui/secrets", None),
        ("GET", "/ui/no/such/page", None),
    ],
)
def test_bad_input_gets_a_4xx_page_never_a_500(
    harness: Harness, method: str, path: str, data: dict[str, str] | None
) -> None:
    client = harness.client
    csrf = sign_in(client, harness.admin.access_id, harness.admin.access_key)
    body = {"csrf": csrf, **data} if data is not None else None
    answer = client.request(method, path, data=body, follow_redirects=False)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "Traceback" not in answer.text


def test_a_multipart_upload_is_refused(harness: Harness) -> None:
    client = harness.client
    csrf = sign_in(client, harness.admin.access_id, harness.admin.access_key)
    answer = client.post(
        "/ui/secrets/new",
        data={"csrf": csrf, "name": "/x"},
        files={"value": ("v.txt", b"data", "text/plain")},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")


def test_forbidden_writes_change_nothing_and_are_audited(harness: Harness) -> None:
    client = harness.client
    admin = harness.admin.headers
    created = client.post(
        "/v1/auth-methods", json={"type": "api_key", "name": "reader-key"}, headers=admin
    ).json()
    client.post("/v1/roles", json={"name": "reader"}, headers=admin).raise_for_status()
    client.put(
        "/v1/roles/reader/rules",
        json={"path": "/dev/*", "capabilities": ["read", "list"]},
        headers=admin,
    ).raise_for_status()
    client.post(
        "/v1/roles/reader/associations", json={"auth_method": "reader-key"}, headers=admin
    ).raise_for_status()

    csrf = sign_in(client, created["access_id"], created["access_key"])
    page = client.post("/ui/secrets/new", data={"csrf": csrf, "name": "/prod/new", "value": "v"})
    assert page.status_code == 403
    assert "Your access roles do not allow this." in page.text
    # No escalation through the console either: the service's own rule, in its own words.
    page = client.post(
        "/ui/roles/reader/rules",
        data={"csrf": csrf, "path": "/*", "capabilities": ["read"]},
    )
    assert page.status_code == 403
    assert client.get("/v1/secrets/prod/new", headers=admin).status_code == 404
    events = client.get(
        "/v1/audit", params={"access_id": created["access_id"]}, headers=admin
    ).json()["events"]
    assert {"secret.create", "role.rule.set"} <= {
        e["action"] for e in events if e["outcome"] == "denied"
    }


def test_reveal_is_audited_as_a_read_and_the_value_stays_out_of_the_trail(
    harness: Harness,
) -> None:
    client = harness.client
    csrf = sign_in(client, harness.admin.access_id, harness.admin.access_key)
    client.post(
        "/ui/secrets/new",
        data={"csrf": csrf, "name": "/dev/token", "value": "tok-value-1"},
        follow_redirects=False,
    )
    item = client.get("/ui/secrets/item", params={"name": "/dev/token"})
    assert "tok-value-1" not in item.text
    revealed = client.post("/ui/secrets/reveal", data={"csrf": csrf, "name": "/dev/token"})
    assert "tok-value-1" in revealed.text
    events = client.get(
        "/v1/audit", params={"path": "/dev/token"}, headers=harness.admin.headers
    ).json()["events"]
    assert [e["action"] for e in events][:3] == ["secret.read", "item.describe", "secret.create"]
    assert "tok-value-1" not in str(events)
    forged = client.post("/ui/secrets/reveal", data={"name": "/dev/token"})
    assert forged.status_code == 403
    assert "tok-value-1" not in forged.text
