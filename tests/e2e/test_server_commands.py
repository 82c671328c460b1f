"""The server-side commands as an operator runs them: `server --dev`, the refusal without a
master key, `db upgrade`, `bootstrap` (idempotent, and creating the master key file on a first
start), `keys rotate`, `keys rewrap`, `audit verify` (and the journaled events it reports as
pending), `server` configured by STRONGROOM_HOST/PORT/WORKERS alone and `healthcheck` following
them."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from strongroom.audit.journal import AuditJournal, encode_events
from strongroom.db import migrate
from strongroom.db.engine import Database
from tests.audit.test_journal import event
from tests.e2e.server_process import STRONGROOM, ServerProcess, free_port
from tests.support.login import key_login

pytestmark = pytest.mark.slow

_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}


def _server_refusing(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``strongroom server`` run with ``env`` on top of a clean environment, expected to stop."""
    return subprocess.run(
        [STRONGROOM, "server", "--port", str(free_port())],
        env={**_CLEAN_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_server_without_master_key_refuses_clearly(tmp_path: Path) -> None:
    result = _server_refusing({"STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    assert result.returncode == 1
    assert "STRONGROOM_MASTER_KEY" in result.stderr
    assert "--dev" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_refuses_a_bad_sts_connect_to_in_one_line(tmp_path: Path) -> None:
    result = _server_refusing(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_STS_CONNECT_TO": "sts.amazonaws.com=http://127.0.0.1:5000/sts",
        }
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        "STRONGROOM_STS_CONNECT_TO entry 'sts.amazonaws.com=http://127.0.0.1:5000/sts'" in lines[0]
    )
    assert not (tmp_path / "db.sqlite").exists()  # refused before touching the database


def test_server_refuses_an_audit_journal_directory_that_is_a_link(tmp_path: Path) -> None:
    """Whoever could point it elsewhere could plant events for the next start to chain."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "db.sqlite.audit-journal").symlink_to(elsewhere)
    result = _server_refusing(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
    )
    assert result.returncode == 1
    assert "audit journal" in result.stderr
    assert "not a link" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []


def _start_dev(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STRONGROOM, "server", "--dev", "--port", str(port), "--workers", "1"],
        env=_CLEAN_ENV,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/sys/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("dev server not ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    return output


def test_dev_server_zero_setup(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _start_dev(tmp_path, port)
    try:
        _wait_ready(url)
    finally:
        output = _stop(first)
    assert "WARNING" in output
    assert "master key" in output
    access_id = re.search(r"access ID:\s+(p-[a-z0-9]{12})", output)
    access_key = re.search(r"access key:\s+(\S+)", output)
    assert access_id, output
    assert access_key, output
    key_file = tmp_path / "strongroom-data" / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "strongroom-data" / "strongroom.db").exists()

    second = _start_dev(tmp_path, port)
    try:
        _wait_ready(url)
        login = httpx.post(
            url + "/v1/auth/login",
            json=key_login(access_id.group(1), access_key.group(1)),
        )
        assert login.status_code == 200
    finally:
        output = _stop(second)
    assert "access key:" not in output, "admin credentials are printed once only"


def test_offline_commands(tmp_path: Path) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": key,
        },
        cwd=tmp_path,
    )
    assert "Database at revision" in server.run_cli("db", "upgrade").stdout
    admin = server.bootstrap()
    again = server.run_cli("bootstrap", check=False)
    assert again.returncode == 0, again.stderr
    assert "Already bootstrapped" in again.stderr
    assert "Access key" not in again.stdout
    assert json.loads(server.run_cli("bootstrap", "--json").stdout)["already_bootstrapped"]
    server.start()
    try:
        with server.client_as(admin) as http:
            for i in range(3):
                http.post(
                    "/v1/secrets", json={"name": f"/r/{i}", "value": f"v{i}"}
                ).raise_for_status()
    finally:
        server.stop()
    assert "Data key 2 is now the newest" in server.run_cli("keys", "rotate").stdout
    assert "Re-encrypted 3 value(s) under data key 2" in server.run_cli("keys", "rewrap").stdout
    assert "Re-encrypted 0 value(s)" in server.run_cli("keys", "rewrap").stdout
    assert "Audit chain intact" in server.run_cli("audit", "verify").stdout
    server.start()
    try:
        with server.client_as(admin) as http:
            assert http.get("/v1/secrets/r/1").json()["value"] == "v1"
    finally:
        server.stop()
    wrong_key = base64.b64encode(secrets.token_bytes(32)).decode()
    refused = subprocess.run(
        [STRONGROOM, "keys", "rotate"],
        env={**server.env, "STRONGROOM_MASTER_KEY": wrong_key},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "master key does not unwrap" in refused.stderr


def _offline(tmp_path: Path) -> ServerProcess:
    return ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
        cwd=tmp_path,
    )


def _orphaned_journal(tmp_path: Path) -> Path:
    """What a server process that was killed leaves: two events journaled, never chained."""
    journal = AuditJournal.create(tmp_path / "db.sqlite.audit-journal")
    journal.append(encode_events([event(1), event(2)]))
    journal.close(remove=False)
    return journal.path


def test_audit_verify_reports_what_a_killed_server_left_in_its_journal(tmp_path: Path) -> None:
    """Verify changes nothing: the journal stays for the next server start to chain."""
    server = _offline(tmp_path)
    server.bootstrap()
    orphan = _orphaned_journal(tmp_path)
    verified = server.run_cli("audit", "verify")
    assert "Audit chain intact: 1 event(s) verified" in verified.stdout
    assert "Pending: 2 journaled event(s) not chained yet, in 1 journal(s)" in verified.stdout
    assert orphan.exists()
    server.start()  # a server start chains what a process that died left behind
    server.stop()
    assert not orphan.exists()
    report = json.loads(server.run_cli("audit", "verify", "--json").stdout)
    assert (report["ok"], report["pending"]) == (True, 0)
    assert report["checked"] >= 3


def test_audit_verify_leaves_an_older_schema_alone(tmp_path: Path) -> None:
    server = _offline(tmp_path)
    database = Database.from_url(server.env["STRONGROOM_DATABASE_URL"])
    migrate.upgrade(database, "0001")  # no audit_journal_progress table yet
    database.dispose()
    orphan = _orphaned_journal(tmp_path)
    verified = server.run_cli("audit", "verify", check=False)
    assert verified.returncode == 1
    assert "strongroom db upgrade" in verified.stderr
    assert "Traceback" not in verified.stderr
    assert orphan.exists()
    database = Database.from_url(server.env["STRONGROOM_DATABASE_URL"])
    assert migrate.current_revision(database) == "0001"  # verify migrates nothing
    database.dispose()
    server.run_cli("db", "upgrade")
    assert "Pending: 2 journaled" in server.run_cli("audit", "verify").stdout


def test_bootstrap_creates_the_master_key_file_once_and_never_replaces_a_lost_one(
    tmp_path: Path,
) -> None:
    """What a container's one-shot set-up runs on every start (docker-compose.yml)."""
    key_file = tmp_path / "keys" / "master.key"
    env = {
        **_CLEAN_ENV,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STRONGROOM_MASTER_KEY_FILE": str(key_file),
    }

    def bootstrap() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRONGROOM, "bootstrap", "--create-master-key"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    first = bootstrap()
    assert first.returncode == 0, first.stderr
    assert "Created the master key file" in first.stderr
    assert re.search(r"Access ID:\s+p-[a-z0-9]{12}", first.stdout)
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()

    second = bootstrap()
    assert second.returncode == 0, second.stderr
    assert "Already bootstrapped" in second.stderr
    assert "Created" not in second.stderr
    assert "Access" not in second.stdout
    assert key_file.read_bytes() == key

    # The key file is lost (a volume not carried over): a new key would orphan every value.
    key_file.unlink()
    lost = bootstrap()
    assert lost.returncode == 1
    assert "restore that key file" in lost.stderr
    assert "Traceback" not in lost.stderr
    assert not key_file.exists()


def test_server_and_healthcheck_follow_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **_CLEAN_ENV,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_HOST": "0.0.0.0",  # noqa: S104  (healthcheck asks loopback then)
        "STRONGROOM_PORT": str(port),
        "STRONGROOM_WORKERS": "1",
    }

    def healthcheck(**override: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRONGROOM, "healthcheck", "--timeout", "2"],
            env={**env, **override}, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    process = subprocess.Popen(
        [STRONGROOM, "server"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}")
        assert healthcheck().returncode == 0
        elsewhere = healthcheck(STRONGROOM_PORT=str(free_port()))
        assert elsewhere.returncode == 1
        assert "no answer" in elsewhere.stderr
    finally:
        output = _stop(process)
    started = [json.loads(line) for line in output.splitlines() if '"server_listening"' in line]
    assert started[0]["url"] == f"http://0.0.0.0:{port}"
    assert started[0]["workers"] == 1
