"""The no-escalation checks through the console (in-process app, SQLite and PostgreSQL): the
same services refuse, and the pages say why in the service's own words."""

from __future__ import annotations

import itertools
import re
from html import unescape
from typing import Any

from tests.support.harness import Harness
from tests.web.test_pages import sign_in

PATH_ERROR = re.compile(r'<p class="field-error" id="r-path-error">([^<]*)</p>')
DENSE = ["/*" + "*".join(order) + "*/x" for order in itertools.permutations("abcdef")][::37][:8]


def _user(harness: Harness, name: str, rules: list[dict[str, Any]]) -> tuple[str, str]:
    client, admin = harness.client, harness.admin.headers
    key = client.post(
        "/v1/auth-methods", json={"type": "api_key", "name": f"{name}-key"}, headers=admin
    ).json()
    client.post("/v1/roles", json={"name": name}, headers=admin).raise_for_status()
    for rule in rules:
        client.put(f"/v1/roles/{name}/rules", json=rule, headers=admin).raise_for_status()
    client.post(
        f"/v1/roles/{name}/associations", json={"auth_method": f"{name}-key"}, headers=admin
    ).raise_for_status()
    return key["access_id"], key["access_key"]


def test_the_console_cannot_lift_the_callers_own_deny(harness: Harness) -> None:
    client = harness.client
    access_id, access_key = _user(
        harness,
        "consoleuser",
        [
            {"path": "/c/*", "capabilities": ["read"]},
            {"path": "/c/secret", "capabilities": ["deny"]},
            {"rule_type": "role-rule", "path": "/consoleuser", "capabilities": ["read", "update"]},
        ],
    )
    csrf = sign_in(client, access_id, access_key)
    # Attack: remove the deny of one's own role from its page.
    page = client.post(
        "/ui/roles/consoleuser/rules/delete",
        data={"csrf": csrf, "rule_type": "item-rule", "path": "/c/secret"},
    )
    assert page.status_code == 403
    assert "only where you hold every capability it takes away" in unescape(page.text)
    rules = client.get("/v1/roles/consoleuser", headers=harness.admin.headers).json()["rules"]
    assert {"path": "/c/secret", "capabilities": ["deny"]}.items() <= next(
        r for r in rules if r["path"] == "/c/secret"
    ).items()


def test_the_console_shows_a_rule_set_too_complex_to_check(harness: Harness) -> None:
    client = harness.client
    access_id, access_key = _user(
        harness,
        "denseuser",
        [
            {"path": "/*", "capabilities": ["read"]},
            {"rule_type": "role-rule", "path": "/denseuser", "capabilities": ["read", "update"]},
            *[{"path": pattern, "capabilities": ["deny"]} for pattern in DENSE],
        ],
    )
    csrf = sign_in(client, access_id, access_key)
    page = client.post(
        "/ui/roles/denseuser/rules",
        data={"csrf": csrf, "path": "/+", "capabilities": ["read"]},
    )
    assert page.status_code == 400
    assert "too complex to check" in unescape(page.text)
    # A path with too many wildcards is refused beside the path field.
    page = client.post(
        "/ui/roles/denseuser/rules",
        data={"csrf": csrf, "path": "/*a*b*c*d*e*f*g*h*i", "capabilities": ["read"]},
    )
    assert page.status_code == 400
    error = PATH_ERROR.search(page.text)
    assert error is not None
    assert "at most 8 wildcards" in unescape(error.group(1))
