"""The console in a real browser against a real server: the tutorial's path from sign-in to an
AWS IAM login that reads the secret made in the browser, CSRF refusals, cookie flags, headers,
and what a narrowly allowed user can and cannot see."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from strongroom.web.headers import CONTENT_SECURITY_POLICY
from tests.support.signing import sign_get_caller_identity
from tests.web.conftest import APP_ROLE, Console

pytestmark = pytest.mark.browser

ACCESS_ID = re.compile(r"p-[a-z0-9]{12}")


def watch(page: Any) -> list[str]:
    """Accept confirm() dialogs; collect script errors and CSP violations (console errors
    other than the browser's note of a 4xx answer, which some tests expect)."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("dialog", lambda dialog: dialog.accept())
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def section(page: Any, name: str) -> Any:
    """The link to a console section in the top navigation."""
    return page.get_by_role("navigation", name="Sections").get_by_role("link", name=name)


def sign_in(page: Any, console: Console, access_id: str, access_key: str) -> None:
    page.goto(console.url + "/ui/")
    page.get_by_label("Access ID", exact=True).fill(access_id)
    page.get_by_label("Access key", exact=True).fill(access_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/secrets"))


def test_tutorial_path_then_aws_iam_login_reads_the_secret(
    console: Console, new_browser: Callable[[], Any], shoot: Callable[[Any, str], None]
) -> None:
    page = new_browser().new_page()
    problems = watch(page)

    # Unauthenticated: every page leads to the sign-in form.
    response = page.goto(console.url + "/ui/auth-methods")
    assert response is not None
    assert response.status == 200
    assert "/ui/login" in page.url
    shoot(page, "sign-in")
    page.get_by_label("Access ID", exact=True).fill(console.admin_access_id)
    page.get_by_label("Access key", exact=True).fill(console.admin_access_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/auth-methods$"))

    # Auth Methods → New → AWS IAM → the tutorial's fields → Save shows the Access ID.
    page.get_by_role("link", name="New", exact=True).click()
    page.get_by_role("link", name=re.compile("AWS IAM")).click()
    page.get_by_label("Name", exact=True).fill("iamAuth1")
    page.get_by_label("Bound AWS Account ID", exact=True).fill("1234")
    page.get_by_label("Bound Role Name", exact=True).fill(APP_ROLE)
    page.get_by_label("Bound Resource ID", exact=True).fill("i-*")
    page.get_by_label("STS URL", exact=True).fill(console.sts_url)
    page.get_by_label("Token lifetime (minutes)", exact=True).fill("15")
    # A mistake is shown beside its field, in the API's words; the rest of the form is kept.
    with page.expect_response(re.compile(r"/new/aws-iam$")) as answer:
        page.get_by_role("button", name="Save").click()
    assert answer.value.status == 400
    error = page.locator("#f-bound_aws_account_id-error")
    assert "an AWS account ID is exactly 12 digits" in error.inner_text()
    assert page.get_by_label("Bound Role Name", exact=True).input_value() == APP_ROLE
    shoot(page, "auth-method-new-aws-iam")
    page.get_by_label("Bound AWS Account ID", exact=True).fill("123456789012")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Auth method iamAuth1 created").wait_for()
    access_id = page.locator("#access-id").inner_text()
    assert ACCESS_ID.fullmatch(access_id)
    shoot(page, "auth-method-created")

    section(page, "Auth Methods").click()
    row = page.get_by_role("row", name=re.compile("iamAuth1"))
    assert access_id in row.inner_text()
    shoot(page, "auth-methods")

    # Access Roles → New → the role's page: associate iamAuth1, add a rule.
    section(page, "Access Roles").click()
    page.get_by_role("link", name="New", exact=True).click()
    page.get_by_label("Name", exact=True).fill("dev-readers")
    page.get_by_label("Description", exact=True).fill("Workloads that read /dev")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="dev-readers").wait_for()
    page.get_by_label("Auth method", exact=True).select_option("iamAuth1")
    page.get_by_label("Sub-claims (optional)", exact=True).fill("role_name=app-*")
    page.get_by_role("button", name="Associate").click()
    page.get_by_text("Auth method associated.").wait_for()
    associations = page.locator(
        "section", has=page.get_by_role("heading", name="Associated auth methods")
    )
    assert "iamAuth1" in associations.inner_text()
    assert "role_name=app-*" in associations.inner_text()

    page.get_by_label("Rule type", exact=True).select_option("item-rule")
    page.get_by_label("Path", exact=True).fill("/dev/*")
    page.get_by_label("read", exact=True).check()
    page.get_by_label("list", exact=True).check()
    page.get_by_role("button", name="Add rule").click()
    page.get_by_text("Rule saved.").wait_for()
    rule_row = page.locator("tr", has_text="/dev/*")
    assert "item-rule" in rule_row.inner_text()
    assert "read" in rule_row.inner_text()
    assert "list" in rule_row.inner_text()
    shoot(page, "role")

    # Secrets → folder browser → create /dev/db-password.
    section(page, "Secrets").click()
    page.get_by_role("heading", name="Nothing here").wait_for()
    shoot(page, "secrets-empty")
    page.get_by_role("link", name="New secret").first.click()
    page.get_by_label("Name", exact=True).fill("/dev/db-password")
    page.get_by_label("Value", exact=True).fill("s3cr3t-v1")
    page.get_by_label("Description", exact=True).fill("Database password for the dev stack")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Secret created.").wait_for()

    # The value is not in the page until Reveal (a POST) is clicked.
    assert "s3cr3t-v1" not in page.content()
    shoot(page, "secret")
    page.get_by_role("button", name="Reveal", exact=True).click()
    assert page.locator("#secret-value").inner_text() == "s3cr3t-v1"
    shoot(page, "secret-revealed")
    page.get_by_role("link", name="Hide").click()
    assert "s3cr3t-v1" not in page.content()

    # New version, then the versions list.
    page.get_by_label("New value", exact=True).fill("s3cr3t-v2")
    page.get_by_role("button", name="Save new version").click()
    page.get_by_text("New version saved.").wait_for()
    versions = page.locator("section", has=page.get_by_role("heading", name="Versions"))
    assert "v1" in versions.inner_text()
    assert "v2" in versions.inner_text()
    page.get_by_role("button", name="Reveal version 1").click()
    assert page.locator("#secret-value").inner_text() == "s3cr3t-v1"

    # The folder browser shows the folder, then the item.
    section(page, "Secrets").click()
    page.get_by_role("link", name="dev/").click()
    page.get_by_role("link", name="db-password").wait_for()
    shoot(page, "secrets")

    # Audit: recent events, filtered by path and outcome.
    section(page, "Audit").click()
    page.get_by_label("Path", exact=True).fill("/dev/db-password")
    page.get_by_label("Outcome", exact=True).select_option("success")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    assert rows.count() >= 4
    actions = page.locator("table.audit tbody tr td:nth-child(3)").all_inner_texts()
    assert {"secret.create", "secret.read", "secret.update"} <= set(actions)
    assert "s3cr3t" not in page.content()
    shoot(page, "audit")

    # A workload logs in with its IAM role (moto's STS checks the signature) and reads it.
    with console.api() as http:
        signed = sign_get_caller_identity(console.principal.credentials, url=console.sts_url + "/")
        login = http.post(
            "/v1/auth/login",
            json={"access_id": access_id, "access_type": "aws_iam", "cloud_id": signed["cloud_id"]},
        )
        assert login.status_code == 200, login.text
        assert login.json()["roles"] == ["dev-readers"]
        assert login.json()["identity"]["role_name"] == APP_ROLE
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        read = http.get("/v1/secrets/dev/db-password", headers=headers)
        assert read.status_code == 200, read.text
        assert read.json()["value"] == "s3cr3t-v2"

    # Delete one version, then the secret.
    page.goto(console.url + "/ui/secrets/item?name=/dev/db-password")
    page.get_by_role("button", name="Delete version 1").click()
    page.get_by_text("Version deleted.").wait_for()
    page.get_by_role("button", name="Delete secret").click()
    page.get_by_text("Secret deleted.").wait_for()
    with console.api() as http:
        assert http.get("/v1/secrets/dev/db-password", headers=headers).status_code == 404

    # Sign out revokes the token: the console asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You have signed out.").wait_for()
    page.goto(console.url + "/ui/secrets")
    assert "/ui/login" in page.url
    assert problems == []


def test_forms_without_the_csrf_token_are_refused(
    console: Console, new_browser: Callable[[], Any]
) -> None:
    page = new_browser().new_page()
    watch(page)
    sign_in(page, console, console.admin_access_id, console.admin_access_key)

    for tamper in ("el => el.remove()", "el => { el.value = 'f'.repeat(64); }"):
        page.goto(console.url + "/ui/roles/new")
        page.get_by_label("Name", exact=True).fill("forged-role")
        page.locator("form[action='/ui/roles/new'] input[name=csrf]").evaluate(tamper)
        with page.expect_response(re.compile(r"/ui/roles/new$")) as answer:
            page.get_by_role("button", name="Save").click()
        assert answer.value.status == 403
        page.get_by_role("heading", name="Not allowed").wait_for()
    page.goto(console.url + "/ui/roles")
    assert "forged-role" not in page.content()

    # The sign-in form has its own token, bound to a cookie (login CSRF).
    fresh = new_browser().new_page()
    fresh.goto(console.url + "/ui/login")
    fresh.get_by_label("Access ID", exact=True).fill(console.admin_access_id)
    fresh.get_by_label("Access key", exact=True).fill(console.admin_access_key)
    fresh.locator("input[name=csrf]").evaluate("el => el.remove()")
    with fresh.expect_response(re.compile(r"/ui/login$")) as answer:
        fresh.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 403
    assert not [c for c in fresh.context.cookies() if c["name"] == "strongroom_session"]


def test_session_cookie_flags_and_security_headers(
    console: Console, new_browser: Callable[[], Any]
) -> None:
    context = new_browser()
    page = context.new_page()
    problems = watch(page)
    sign_in(page, console, console.admin_access_id, console.admin_access_key)

    (cookie,) = [c for c in context.cookies() if c["name"] == "strongroom_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert cookie["secure"] is False  # served over plain HTTP here (behind_https off)
    assert cookie["value"].startswith("t-")
    assert cookie["expires"] > 0  # Max-Age: the session ends with the token
    assert page.evaluate("document.cookie") == ""  # out of reach of scripts

    for path in ("/ui/secrets", "/ui/login", "/ui/static/console.css", "/ui/no-such-page"):
        response = page.request.get(console.url + path)
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    # The API keeps its own headers: the console's policy is only for /ui.
    assert "content-security-policy" not in page.request.get(console.url + "/v1/sys/health").headers
    assert problems == []


def test_objects_outside_the_users_rules_answer_403_and_show_nothing(
    console: Console, new_browser: Callable[[], Any], shoot: Callable[[Any, str], None]
) -> None:
    with console.api() as http:
        admin = console.admin_headers(http)
        for name, value in (("/prod/api-key", "prod-value-42"), ("/dev/app-config", "dev-value")):
            created = http.post("/v1/secrets", json={"name": name, "value": value}, headers=admin)
            assert created.status_code == 201, created.text
        method = http.post(
            "/v1/auth-methods", json={"type": "api_key", "name": "narrow-key"}, headers=admin
        ).json()
        http.post("/v1/roles", json={"name": "narrow"}, headers=admin).raise_for_status()
        http.put(
            "/v1/roles/narrow/rules",
            json={"path": "/dev/*", "capabilities": ["read", "list"]},
            headers=admin,
        ).raise_for_status()
        http.post(
            "/v1/roles/narrow/associations", json={"auth_method": "narrow-key"}, headers=admin
        ).raise_for_status()

    page = new_browser().new_page()
    problems = watch(page)
    sign_in(page, console, method["access_id"], method["access_key"])

    # Listings show only what the rules allow; the Audit section is not offered.
    folders = page.locator("table.browser").inner_text()
    assert "dev/" in folders
    assert "prod" not in folders
    assert section(page, "Audit").count() == 0
    section(page, "Auth Methods").click()
    assert console.admin_access_id not in page.content()
    page.get_by_role("heading", name="No auth methods to show").wait_for()
    section(page, "Access Roles").click()
    page.get_by_role("heading", name="No access roles to show").wait_for()

    for path in (
        "/ui/secrets/item?name=/prod/api-key",
        "/ui/secrets/item?name=/prod/does-not-exist",  # no existence oracle: 403 as well
        "/ui/roles/admin",
        "/ui/auth-methods/narrow-key",
        "/ui/audit",
    ):
        response = page.goto(console.url + path)
        assert response is not None
        assert response.status == 403, path
        main = page.locator("main").inner_text()
        assert "Not allowed" in main
        for leak in ("prod-value-42", "api-key", "does-not-exist", "admin", "/*"):
            assert leak not in main, (path, leak)
    shoot(page, "forbidden")

    # A reveal form pointed at a forbidden item is refused too, and shows nothing.
    page.goto(console.url + "/ui/secrets/item?name=/dev/app-config")
    page.locator("form[action='/ui/secrets/reveal'] input[name=name]").first.evaluate(
        "el => { el.value = '/prod/api-key'; }"
    )
    with page.expect_response(re.compile(r"/ui/secrets/reveal$")) as answer:
        page.get_by_role("button", name="Reveal", exact=True).click()
    assert answer.value.status == 403
    assert "prod-value-42" not in page.content()

    # What the rules do allow works.
    page.goto(console.url + "/ui/secrets/item?name=/dev/app-config")
    page.get_by_role("button", name="Reveal", exact=True).click()
    assert page.locator("#secret-value").inner_text() == "dev-value"
    assert page.get_by_role("button", name="Delete secret").count() == 0
    assert problems == []
