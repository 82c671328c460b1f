"""``/docs`` in the app: the server's own page and an allowlist of files, under a
Content-Security-Policy that differs from the console's only by what Swagger UI needs.
The browser half is tests/web/test_docs_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strongroom.web.docs import ASSETS, SWAGGER_UI_DIRECTORY
from strongroom.web.headers import CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY
from tests.support.harness import Harness

# Nothing here depends on the database: SQLite alone.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_the_docs_policy_adds_only_what_swagger_ui_needs() -> None:
    console, docs = directives(CONTENT_SECURITY_POLICY), directives(DOCS_CONTENT_SECURITY_POLICY)
    changed = {name: value for name, value in docs.items() if console.get(name) != value}
    assert changed == {"img-src": "'self' data:", "connect-src": "'self'"}
    assert set(console) <= set(docs)
    assert "'unsafe-inline'" not in DOCS_CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in DOCS_CONTENT_SECURITY_POLICY


@sqlite_only
def test_the_page_loads_only_the_servers_own_files(harness: Harness) -> None:
    answer = harness.client.get("/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    page = answer.text
    assert "<script>" not in page  # no inline script: the policy would refuse it
    assert "style=" not in page
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert references
    assert all(ref.startswith(("/docs/static/", "/ui/static/")) for ref in references)
    for ref in references:
        assert harness.client.get(ref).status_code == 200, ref


@sqlite_only
@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_allowed_file_is_served_with_its_type(harness: Harness, name: str) -> None:
    answer = harness.client.get(f"/docs/static/{name}")
    assert answer.status_code == 200
    expected = "text/css" if name.endswith(".css") else "text/javascript"
    assert answer.headers["content-type"].split(";")[0] == expected
    assert answer.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY
    assert len(answer.content) > 100


@sqlite_only
@pytest.mark.parametrize(
    "path",
    [
        # The package's other files: source maps, other bundles, its own page (inline script).
        "/docs/static/swagger-ui-bundle.js.map",
        "/docs/static/swagger-ui-standalone-preset.js",
        "/docs/static/index.html",
        "/docs/static/swagger-initializer.js",
        "/docs/static/oauth2-redirect.html",
        # A name never reaches a path.
        "/docs/static/..%2F..%2Fconfig.py",
        "/docs/static/%2e%2e/docs.py",
        "/docs/static/",
        # FastAPI's own pages, which load from a CDN, are off.
        "/redoc",
        "/docs/oauth2-redirect",
    ],
)
def test_nothing_else_is_served(harness: Harness, path: str) -> None:
    answer = harness.client.get(path, follow_redirects=False)
    assert answer.status_code == 404, (path, answer.status_code)
    assert answer.json()["error"] == "NotFound"


@sqlite_only
def test_docs_files_are_not_audited_and_the_page_is(harness: Harness) -> None:
    client, admin = harness.client, harness.admin.headers
    client.get("/docs")
    client.get("/docs/static/docs.js")
    events = client.get("/v1/audit", params={"limit": 20}, headers=admin).json()["events"]
    actions = [event["action"] for event in events]
    assert "GET /docs" in actions
    assert not [action for action in actions if "/docs/static/" in action]


def test_the_image_keeps_every_swagger_ui_file_the_page_serves() -> None:
    """The Dockerfile deletes the rest of the package's files: the two lists must agree."""
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    command = re.search(r"swagger_ui_bundle/vendor -type f \\\n(.*?)-delete", dockerfile, re.S)
    assert command is not None
    kept = set(re.findall(r"! -name (\S+)", command.group(1)))
    served = {name for name, (path, _) in ASSETS.items() if path.parent == SWAGGER_UI_DIRECTORY}
    assert kept == served
