"""End to end through real HTTP: `strongroom bootstrap`, then `strongroom server` (uvicorn) on a
loopback port, driven with httpx: role → rule → association → API key login → read/list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import ServerProcess
from tests.support.login import key_login

pytestmark = pytest.mark.slow


@pytest.fixture
def server(database_url: str, master_key_b64: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": master_key_b64,
            "STRONGROOM_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
            "STRONGROOM_LOG_FORMAT": "json",
        },
        cwd=tmp_path,
    )
    yield process
    process.stop()


def test_operator_flow_over_http(server: ServerProcess, tmp_path: Path) -> None:
    admin = server.bootstrap()
    server.start()
    with server.client_as(admin, timeout=10) as http:  # the admin's token by default
        created = http.post("/v1/auth-methods", json={"type": "api_key", "name": "app-key"}).json()
        http.post("/v1/roles", json={"name": "app"}).raise_for_status()
        http.put(
            "/v1/roles/app/rules",
            json={"path": "/dev/*", "capabilities": ["read", "list"]},
        ).raise_for_status()
        http.post("/v1/roles/app/associations", json={"auth_method": "app-key"}).raise_for_status()
        http.post(
            "/v1/secrets", json={"name": "/dev/db-password", "value": "hunter2"}
        ).raise_for_status()

        app_login = http.post(
            "/v1/auth/login", json=key_login(created["access_id"], created["access_key"])
        ).json()
        app_headers = {"Authorization": f"Bearer {app_login['token']}"}
        assert app_login["roles"] == ["app"]
        read = http.get("/v1/secrets/dev/db-password", headers=app_headers)
        assert read.json()["value"] == "hunter2"
        assert "x-request-id" in read.headers
        listing = http.get("/v1/items", params={"path": "/dev"}, headers=app_headers).json()
        assert [i["name"] for i in listing["items"]] == ["/dev/db-password"]
        assert http.get("/v1/auth-methods", headers=app_headers).json() == {"auth_methods": []}
        assert http.get("/metrics").status_code == 200

    log = server.stop()
    assert "hunter2" not in log
    assert admin["access_key"] not in log
    audit_lines = (tmp_path / "audit.jsonl").read_text()
    assert "secret.read" in audit_lines
    assert "hunter2" not in audit_lines
    verify = server.run_cli("audit", "verify", "--json")
    assert '"ok": true' in verify.stdout
