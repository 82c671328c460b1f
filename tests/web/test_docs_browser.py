"""``/docs`` in headless Chromium against a real server: Swagger UI renders every operation from
the server's own files, with no request leaving 127.0.0.1 and no Content-Security-Policy
violation; Authorize takes a token and "Try it out" sends it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.web.conftest import Console

pytestmark = pytest.mark.browser

# Recorded in the page before any of its scripts run (an init script is not subject to the
# page's policy): every violation the browser reports, whatever the console says.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_docs_render_offline_under_the_policy(
    console: Console, new_browser: Callable[[], Any], shoot: Callable[[Any, str], None]
) -> None:
    with console.api() as http:
        token = console.admin_headers(http)["Authorization"].removeprefix("Bearer ")
        schema = http.get("/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())

    context = new_browser()
    requests: list[str] = []
    foreign: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        requests.append(url)
        if urlsplit(url).hostname != "127.0.0.1":
            foreign.append(url)
            request_route.abort()
            return
        request_route.continue_()

    context.route("**/*", route)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))

    response = page.goto(console.url + "/docs")
    assert response is not None
    assert response.status == 200
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() == operations
    assert page.get_by_text("Strongroom", exact=False).first.is_visible()
    shoot(page, "docs")

    # Authorize: the bearer scheme takes the token; then "Try it out" sends it.
    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux")
    assert dialog.locator("#api_key_value").is_visible()  # X-Vault-Token, the other scheme
    bearer = dialog.locator(".auth-container").filter(has=page.locator("#auth-bearer-value"))
    bearer.locator("#auth-bearer-value").fill(token)
    bearer.get_by_role("button", name="Apply credentials").click()
    dialog.locator("button.close-modal").click()
    operation = page.locator("#operations-auth-describe_token_v1_auth_token_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(re.compile(r"/v1/auth/token$")) as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"] == f"Bearer {token}"
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    assert status.inner_text().strip() == "200"

    assert page.evaluate("window.__violations") == []
    assert problems == []
    assert foreign == []
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in requests)
    assert any(url.endswith("/openapi.json") for url in requests)
    # The token typed into Authorize stays in the page, never in the browser's storage.
    assert token not in page.evaluate("JSON.stringify(Object.entries(localStorage))")
