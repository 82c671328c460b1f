"""The token cache against the real server: reuse, expiry, re-login after revocation, file
modes. Logins are counted in the server's audit trail."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Invoker, RunningServer


@pytest.fixture
def profile(invoke: Invoker, server: RunningServer) -> tuple[str, Path]:
    """A fresh api_key profile 'default' whose role may list roles; (access_id, cache file)."""
    name = f"cache-{secrets.token_hex(4)}"
    server.admin.call("POST", "/v1/roles", json={"name": name})
    server.admin.call(
        "PUT",
        f"/v1/roles/{name}/rules",
        json={"rule_type": "role-rule", "path": "/*", "capabilities": ["list"]},
    )
    access_id, key = server.admin.api_key_method(name, role=name)
    result = invoke.configure_key(access_id, key, server.url)
    assert result.exit_code == 0, result.stderr
    return access_id, invoke.home / ".tmp_creds" / f"default-{access_id}"


def test_second_command_makes_no_login(
    invoke: Invoker, server: RunningServer, profile: tuple[str, Path]
) -> None:
    access_id, cache = profile
    assert invoke("list-roles").exit_code == 0
    assert invoke("list-roles", "--json").exit_code == 0
    assert server.admin.logins(access_id) == 1
    assert json.loads(cache.read_text())["token"].startswith("t-")


def test_an_expired_cache_entry_means_a_new_login(
    invoke: Invoker, server: RunningServer, profile: tuple[str, Path]
) -> None:
    access_id, cache = profile
    assert invoke("list-roles").exit_code == 0
    record = json.loads(cache.read_text())
    old_token = record["token"]
    cache.write_text(json.dumps(record | {"expiry": 1_000_000_000}))
    assert invoke("list-roles").exit_code == 0
    assert server.admin.logins(access_id) == 2
    assert json.loads(cache.read_text())["token"] != old_token


def test_a_revoked_cached_token_is_replaced_transparently(
    invoke: Invoker, server: RunningServer, profile: tuple[str, Path]
) -> None:
    access_id, cache = profile
    assert invoke("list-roles").exit_code == 0
    token = json.loads(cache.read_text())["token"]
    revoked = httpx.delete(
        server.url + "/v1/auth/token", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 204
    result = invoke("list-roles", "--json")
    assert result.exit_code == 0, result.stderr
    assert server.admin.logins(access_id) == 2
    assert json.loads(cache.read_text())["token"] != token


def test_auth_logs_in_even_with_a_cached_token(
    invoke: Invoker, server: RunningServer, profile: tuple[str, Path]
) -> None:
    access_id, _ = profile
    assert invoke("list-roles").exit_code == 0
    result = invoke("auth")
    assert result.exit_code == 0, result.stderr
    assert access_id in result.stdout
    assert "t-" not in result.stdout  # the token is not shown unless asked for
    assert server.admin.logins(access_id) == 2


def test_state_files_are_private(invoke: Invoker, profile: tuple[str, Path]) -> None:
    _, cache = profile
    assert invoke("list-roles").exit_code == 0
    home = invoke.home

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(home) == 0o700
    assert mode(home / "profiles") == 0o700
    assert mode(home / ".tmp_creds") == 0o700
    assert mode(home / "profiles" / "default.toml") == 0o600
    assert mode(cache) == 0o600
    leftovers = [p.name for p in (home / "profiles").iterdir() if p.name != "default.toml"]
    assert leftovers == []  # atomic writes leave no temporary files behind


def test_configure_replaces_the_profile_and_drops_its_cached_token(
    invoke: Invoker, server: RunningServer, profile: tuple[str, Path]
) -> None:
    access_id, cache = profile
    assert invoke("list-roles").exit_code == 0
    assert cache.exists()
    result = invoke.configure_key(access_id, "changed", server.url)
    assert result.exit_code == 0
    assert not cache.exists()
