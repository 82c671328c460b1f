"""``strongroom keys change-master`` against a real server (SPEC section 6): the data keys are
re-wrapped under a new master key while the server runs, which keeps working; a server started
afterwards reads everything with the new key and refuses the old one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from strongroom.crypto import generate_master_key_file
from tests.e2e.server_process import STRONGROOM, ServerProcess

pytestmark = pytest.mark.slow


def test_change_master_while_serving_then_a_restart_reads_everything(tmp_path: Path) -> None:
    old_key, new_key = tmp_path / "old.key", tmp_path / "new.key"
    generate_master_key_file(old_key)
    generate_master_key_file(new_key)
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY_FILE": str(old_key),
            "STRONGROOM_LOGIN_PROCESSES": "0",
        },
        cwd=tmp_path,
    )
    admin = server.bootstrap()
    server.run_cli("keys", "rotate")  # two encryption keys and the digest key to re-wrap
    server.start()
    try:
        headers = server.bearer(admin, timeout=10)
        for i in range(3):
            httpx.post(
                server.url + "/v1/secrets",
                json={"name": f"/m/{i}", "value": f"value {i}"},
                headers=headers,
            ).raise_for_status()

        changed = server.run_cli(
            "keys", "change-master", "--new-master-key-file", str(new_key), check=False
        )
        assert changed.returncode == 0, changed.stderr
        assert "Re-wrapped 3 data key(s) under the new master key (local key fp=" in changed.stdout
        assert f"STRONGROOM_MASTER_KEY_FILE={new_key}" in changed.stderr

        # The running server holds its data keys: reads, writes and logins go on.
        read = httpx.get(server.url + "/v1/secrets/m/0", headers=headers, timeout=10)
        assert read.json()["value"] == "value 0"
        httpx.post(
            server.url + "/v1/secrets",
            json={"name": "/m/after", "value": "written after the change"},
            headers=headers,
        ).raise_for_status()
        assert server.bearer(admin, timeout=10)
    finally:
        server.stop()

    # The old key opens nothing any more: a server (and any server command) refuses it.
    refused = subprocess.run(
        [STRONGROOM, "server", "--port", str(server.port)],
        env=server.env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "master key does not unwrap this database's data keys" in refused.stderr
    again = server.run_cli("keys", "change-master", "--new-master-key-file", str(old_key),
                           check=False)  # fmt: skip
    assert again.returncode == 1
    assert "the master key does not unwrap this database's data keys" in again.stderr

    server.env["STRONGROOM_MASTER_KEY_FILE"] = str(new_key)
    same = server.run_cli("keys", "change-master", "--new-master-key-file", str(new_key),
                          check=False)  # fmt: skip
    assert same.returncode == 1
    assert "is the one in use" in same.stderr
    server.start()
    try:
        # Every value, the old token (its digest key was re-wrapped, not replaced), new logins.
        for i in range(3):
            read = httpx.get(server.url + f"/v1/secrets/m/{i}", headers=headers, timeout=10)
            assert read.json()["value"] == f"value {i}"
        after = httpx.get(server.url + "/v1/secrets/m/after", headers=headers, timeout=10)
        assert after.json()["value"] == "written after the change"
        fresh = server.bearer(admin, timeout=10)
        events = httpx.get(
            server.url + "/v1/audit", params={"limit": 200}, headers=fresh, timeout=10
        ).json()["events"]
    finally:
        server.stop()
    (change,) = [e for e in events if e["action"] == "sys.keys.change_master"]
    assert change["outcome"] == "success"
    assert change["reason"].startswith("3 data keys re-wrapped: local key fp=")
    assert new_key.read_text().strip() not in json.dumps(events)
    verified = server.run_cli("audit", "verify")
    assert "Audit chain intact" in verified.stdout
