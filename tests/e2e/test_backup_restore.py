"""``strongroom backup`` and ``restore`` around a real server under a write load (SPEC section 6):
nothing acknowledged before the backup began is lost (secrets, and the audit events of reads
that are still in a worker's audit journal when it begins), the restored store serves reads,
and its audit chain verifies. A restore never replaces the store under a running server."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import STRONGROOM
from tests.e2e.test_login_processes import Server

pytestmark = pytest.mark.slow


@dataclass
class Load:
    """Writers creating secrets as fast as the server takes them, each acknowledgement
    timestamped; readers reading meanwhile."""

    url: str
    headers: dict[str, str]
    acknowledged: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def write(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=15) as client:
            n = 0
            while not self.stop.is_set():
                name = f"/load/{worker}-{n}"
                answer = client.post("/v1/secrets", json={"name": name, "value": f"v {name}"})
                if answer.status_code != 201:
                    self.errors.append(f"{name}: {answer.status_code} {answer.text}")
                    return
                self.acknowledged.append((time.monotonic(), name))
                n += 1

    def read(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=15) as client:
            while not self.stop.is_set():
                answer = client.get("/v1/secrets/base/0")
                if answer.status_code != 200:
                    self.errors.append(f"read: {answer.status_code} {answer.text}")
                    return


def test_backup_under_load_then_restore(tmp_path: Path) -> None:
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_LOG_FORMAT": "json",
        "STRONGROOM_LOGIN_PROCESSES": "0",
    }
    server = Server(env, workers=2, cwd=tmp_path)
    admin = server.bootstrap()
    backup_file = tmp_path / "backups" / "strongroom.backup"
    backup_file.parent.mkdir()
    server.start()
    try:
        headers = server.bearer(admin)
        for i in range(5):
            httpx.post(
                server.url + "/v1/secrets",
                json={"name": f"/base/{i}", "value": f"base {i}"},
                headers=headers,
            ).raise_for_status()
        load = Load(server.url, headers)
        threads = [threading.Thread(target=load.write, args=(w,)) for w in range(2)]
        threads.append(threading.Thread(target=load.read))
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            # A read answered just before the backup begins: its audit event is durable in a
            # worker's journal and reaches the chain some 50 ms later.
            probe = httpx.get(server.url + "/v1/secrets/base/4", headers=headers, timeout=15)
            assert probe.status_code == 200
            began = time.monotonic()
            made = server.run_cli("backup", "--to", str(backup_file), check=False)
            ended = time.monotonic()
            time.sleep(0.3)  # writes acknowledged after the backup: not in it
        finally:
            load.stop.set()
            for thread in threads:
                thread.join()
        assert not load.errors, load.errors
        assert made.returncode == 0, made.stderr
        assert f"to {backup_file}" in made.stdout
        assert "readable only with this store's master key" in made.stderr
        assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600
        assert not list(backup_file.parent.glob(".*")), "no partial file left"
        before = [name for at, name in load.acknowledged if at < began]
        after = [name for at, name in load.acknowledged if at > ended]
        assert len(before) > 10, len(before)
        assert after

        # Never under a running server, --force or not.
        refused = server.run_cli("restore", "--from", str(backup_file), "--force", check=False)
        assert refused.returncode == 1
        assert "in use by a running server" in refused.stderr
    finally:
        log = server.stop()
        assert not server.kill_leftovers()
    assert "Traceback" not in log, log

    kept = server.run_cli("restore", "--from", str(backup_file), check=False)
    assert kept.returncode == 1
    assert "say so with --force" in kept.stderr
    restored = server.run_cli("restore", "--from", str(backup_file), "--force", check=False)
    assert restored.returncode == 0, restored.stderr
    assert "audit event(s) verified" in restored.stdout
    assert "kept as" in restored.stderr
    # The store it replaced is kept, its audit journals with it.
    aside = sorted(p.name for p in (tmp_path / "data").glob("strongroom.db.pre-restore-*"))
    assert len(aside) == 2
    assert aside[1] == aside[0] + ".audit-journal"

    server.start()
    try:
        headers = server.bearer(admin)
        with httpx.Client(base_url=server.url, headers=headers, timeout=15) as client:
            expected = {name: f"v {name}" for name in before}
            expected.update({f"/base/{i}": f"base {i}" for i in range(5)})
            for name, value in expected.items():
                answer = client.get("/v1/secrets" + name)
                assert answer.status_code == 200, (name, answer.text)
                assert answer.json()["value"] == value
            # A snapshot: what was acknowledged after the backup is not in it.
            assert client.get("/v1/secrets" + after[-1]).status_code == 404
            probed = client.get(
                "/v1/audit",
                params={"path": "/base/4", "limit": 1000},
            ).json()["events"]
            restores = client.get("/v1/audit", params={"limit": 1000}).json()["events"]
    finally:
        log = server.stop()
        assert not server.kill_leftovers()
    ids = {event["request_id"] for event in probed}
    assert probe.headers["x-request-id"] in ids, "the read before the backup lost its event"
    assert any(event["action"] == "sys.restore" for event in restores)
    verified = server.run_cli("audit", "verify")
    assert "Audit chain intact" in verified.stdout


def test_postgresql_stores_are_backed_up_with_pg_dump(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env["STRONGROOM_DATABASE_URL"] = "postgresql+psycopg://strongroom@db.invalid/strongroom"
    for command in (["backup", "--to", str(tmp_path / "x")], ["restore", "--from", "x"]):
        result = subprocess.run(
            [STRONGROOM, *command], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.startswith("error: this store is PostgreSQL: back it up with pg_dump")
        assert len(result.stderr.splitlines()) == 1
