"""``strongroom bootstrap --recover`` as an operator runs it (SPEC section 11): every admin key is
lost (and the admin role tampered with); only the holder of the master key can mint a new one,
which then administers everything again, and the recovery is in the audit trail."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from strongroom.config import Settings
from tests.e2e.server_process import STRONGROOM
from tests.support.harness import running_app

pytestmark = pytest.mark.slow


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    return subprocess.run(
        [STRONGROOM, *args], env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # SQLite: the same statements run on PostgreSQL in tests/api/test_bootstrap_recover.py.
    return {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[TestClient]:
    """The app on the same database, in this process (the CLI runs as its own processes)."""
    settings = Settings(
        database_url=env["STRONGROOM_DATABASE_URL"],
        master_key=env["STRONGROOM_MASTER_KEY"],
        log_format="console",
    )
    with running_app(settings) as app:
        yield app.client


def login(api: TestClient, access_id: str, access_key: str) -> dict[str, str]:
    answer = api.post(
        "/v1/auth/login",
        json={"access_id": access_id, "access_type": "access_key", "access_key": access_key},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_a_lost_admin_key_is_recovered_with_the_master_key_only(
    env: dict[str, str], api: TestClient
) -> None:
    first = run(env, "bootstrap", "--json")
    assert first.returncode == 0, first.stderr
    lost = json.loads(first.stdout)
    admin = login(api, lost["access_id"], lost["access_key"])
    # Before the key is lost, someone locks part of the tree away from the admin role.
    denied = api.put(
        "/v1/roles/admin/rules",
        json={"path": "/locked/*", "capabilities": ["deny"]},
        headers=admin,
    )
    assert denied.status_code == 200, denied.text

    # Without the master key, or with another one: refused, nothing minted.
    without = {k: v for k, v in env.items() if k != "STRONGROOM_MASTER_KEY"}
    refused = run(without, "bootstrap", "--recover")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: cannot recover the admin: no master key")
    other_key = base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = run({**env, "STRONGROOM_MASTER_KEY": other_key}, "bootstrap", "--recover")
    assert wrong.returncode == 1
    assert "master key does not unwrap" in wrong.stderr
    assert "Access key" not in wrong.stdout
    methods = api.get("/v1/auth-methods", headers=admin).json()["auth_methods"]
    assert [m["access_id"] for m in methods] == [lost["access_id"]]
    lost_name = methods[0]["name"]

    recovered = run(env, "bootstrap", "--recover")
    assert recovered.returncode == 0, recovered.stderr
    lines = recovered.stdout.splitlines()
    access_id = lines[0].split()[-1]
    access_key = lines[1].split()[-1]
    assert access_id.startswith("p-")
    assert access_id != lost["access_id"]
    assert "rules were changed" in recovered.stderr
    assert f"Still tied to the admin role: {lost_name}" in recovered.stderr

    new_admin = login(api, access_id, access_key)
    # Everything again, the part a deny had locked away included.
    created = api.post("/v1/secrets", json={"name": "/locked/db", "value": "v"}, headers=new_admin)
    assert created.status_code == 201, created.text
    # The lost key's auth method is the operator's to delete, with the new key.
    gone = api.delete(f"/v1/auth-methods/{lost_name}", headers=new_admin)
    assert gone.status_code == 204, gone.text
    assert api.get("/v1/auth/token", headers=admin).status_code == 401

    events = api.get(
        "/v1/audit", params={"access_id": access_id, "limit": 100}, headers=new_admin
    ).json()["events"]
    recovery = next(e for e in events if e["action"] == "sys.bootstrap.recover")
    assert recovery["outcome"] == "success"
    assert recovery["reason"] == "admin rules restored"
    assert access_key not in json.dumps(events)

    # Recovering again works just as well (each run is a new key); the role is recreated when
    # it was deleted.
    assert api.delete("/v1/roles/admin", headers=new_admin).status_code == 204
    again = run(env, "bootstrap", "--recover", "--json")
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert answer["role_recreated"] is True
    assert answer["other_admin_auth_methods"] == []
    third = login(api, answer["access_id"], answer["access_key"])
    assert api.get("/v1/secrets/locked/db", headers=third).json()["value"] == "v"
    verified = run(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_recover_on_a_database_never_bootstrapped_says_what_to_run(env: dict[str, str]) -> None:
    result = run(env, "bootstrap", "--recover")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: this database was never bootstrapped: run `strongroom bootstrap`"
    )
