"""Fail-closed audit with ``AUDIT_FILE`` (SPEC section 7), against a real ``strongroom server``
(two workers, their login processes) on SQLite and PostgreSQL, with AWS logins through moto.

The attack: fill the disk that holds ``AUDIT_FILE`` (a tmpfs of the server's own, see
tests/support/tiny_disk.py), then use every door: writes, API-key and AWS logins, reads,
denials, the console. A request whose event cannot reach every sink must answer 503 at once,
change nothing (no secret, no token, no spent signature, no event in the chain for it) and
leave no torn line in the file; once the disk has room again everything works as before.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.server_process import STRONGROOM, ServerProcess
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity
from tests.support.tiny_disk import TinyDisk

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SECRET_VALUE = "value-that-must-never-reach-the-trail-" + secrets.token_hex(8)


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _sql(database_url: str, statement: str) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(statement)).all())
    finally:
        engine.dispose()


@dataclass
class Stack:
    server: ServerProcess
    disk: TinyDisk
    database_url: str
    admin_body: dict[str, str]
    admin: httpx.Client
    iam_body: Callable[[], dict[str, str]]
    audit_file: Path
    failed_ids: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def file_lines(self) -> list[bytes]:
        return (self.disk.seen_by(self.pid) / self.audit_file.name).read_bytes().splitlines(True)


@pytest.fixture
def stack(
    database_url: str, master_key_b64: str, tmp_path: Path, moto: MotoWorld
) -> Iterator[Stack]:
    disk = TinyDisk(tmp_path / "audit-disk")
    problem = disk.unavailable()
    if problem is not None:
        pytest.skip(problem)
    audit_file = disk.mountpoint / "audit.jsonl"
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": master_key_b64,
        "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
        "STRONGROOM_LOG_FORMAT": "json",
        "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
    }
    bootstrap = ServerProcess(env, cwd=tmp_path).bootstrap()
    server = ServerProcess(
        {**env, "STRONGROOM_AUDIT_FILE": str(audit_file)},
        workers=2,
        cwd=tmp_path,
        wrapper=disk.wrapper(),
    )
    server.start()
    admin_body = {
        "access_id": bootstrap["access_id"],
        "access_type": "access_key",
        "access_key": bootstrap["access_key"],
    }
    admin = httpx.Client(base_url=server.url, timeout=15)
    try:
        login = admin.post("/v1/auth/login", json=admin_body)
        assert login.status_code == 200, login.text
        admin.headers["Authorization"] = f"Bearer {login.json()['token']}"
        method = admin.post(
            "/v1/auth-methods",
            json={
                "type": "aws_iam",
                "name": "iamApps",
                "bound_aws_account_id": ["123456789012"],
                "bound_role_name": ["app-role"],
                "sts_url": moto.server.url,
            },
        ).json()
        admin.post("/v1/roles", json={"name": "apps"}).raise_for_status()
        admin.put(
            "/v1/roles/apps/rules", json={"path": "/fc/*", "capabilities": ["read"]}
        ).raise_for_status()
        admin.post(
            "/v1/roles/apps/associations", json={"auth_method": "iamApps"}
        ).raise_for_status()
        admin.post(
            "/v1/secrets", json={"name": "/fc/kept", "value": SECRET_VALUE}
        ).raise_for_status()

        def iam_body() -> dict[str, str]:
            # A fresh signed nonce, as the CLI sends: two logins signed within one second
            # are two requests, not a replay.
            signed = sign_get_caller_identity(
                moto.app.credentials,
                url=moto.server.url + "/",
                extra_headers={"X-Strongroom-Login-Nonce": secrets.token_urlsafe(16)},
            )
            return {
                "access_id": method["access_id"],
                "access_type": "aws_iam",
                "cloud_id": signed["cloud_id"],
                # The same login as Vault's AWS auth sends it (SPEC section 10).
                **{key: value for key, value in signed.items() if key.startswith("iam_")},
            }

        yield Stack(server, disk, database_url, admin_body, admin, iam_body, audit_file)
    finally:
        admin.close()
        log = server.stop()
        assert "Traceback" not in log, log
        assert bootstrap["access_key"] not in log


def _outcome(stack: Stack, send: Callable[[], httpx.Response]) -> int | str:
    """The status of a request, or "hung" when it got no answer in time (never acceptable)."""
    try:
        response = send()
    except httpx.TimeoutException:
        return "hung"
    if response.status_code == 503:
        stack.failed_ids.append(response.headers["x-request-id"])
        assert SECRET_VALUE not in response.text
    return response.status_code


def test_a_full_audit_file_disk_fails_every_path_closed_and_changes_nothing(
    stack: Stack,
) -> None:
    admin, url = stack.admin, stack.server.url
    console = httpx.Client(base_url=url, timeout=15)
    signing_in = httpx.Client(base_url=url, timeout=15)
    try:
        # Console sessions made while the disk had room: one signed in, one about to sign in.
        form = console.get("/ui/login")
        console.post(
            "/ui/login",
            data={
                "csrf": _csrf(form.text),
                "access_id": stack.admin_body["access_id"],
                "access_key": stack.admin_body["access_key"],
                "next": "",
            },
        )
        console_csrf = _csrf(console.get("/ui/secrets").text)
        sign_in_csrf = _csrf(signing_in.get("/ui/login").text)
        tokens_before = _sql(stack.database_url, "SELECT count(*) FROM tokens")[0][0]
        lines_before = len(stack.file_lines())

        stack.disk.fill(stack.pid)
        # The file's last page still takes a few lines (as a real disk's last block would):
        # read until the first refusal. Each read is one event, well under a page.
        first_refusal: int | str = 200
        for _ in range(200):
            first_refusal = _outcome(stack, lambda: admin.get("/v1/secrets/fc/kept"))
            if first_refusal != 200:
                break
        assert first_refusal == 503, "a read past the full disk was answered with that"

        aws_login = stack.iam_body()
        vault_login = {
            "role": "iamApps",
            **{key: value for key, value in stack.iam_body().items() if key.startswith("iam_")},
        }
        vault = {"X-Vault-Token": admin.headers["Authorization"].removeprefix("Bearer ")}
        outcomes = {
            "create a secret": _outcome(
                stack, lambda: admin.post("/v1/secrets", json={"name": "/fc/new", "value": "x"})
            ),
            "update a secret": _outcome(
                stack, lambda: admin.put("/v1/secrets/fc/kept", json={"value": "changed"})
            ),
            "create a role": _outcome(stack, lambda: admin.post("/v1/roles", json={"name": "r"})),
            "API key login": _outcome(
                stack, lambda: httpx.post(url + "/v1/auth/login", json=stack.admin_body, timeout=15)
            ),
            "AWS IAM login": _outcome(
                stack, lambda: httpx.post(url + "/v1/auth/login", json=aws_login, timeout=15)
            ),
            "read": _outcome(stack, lambda: admin.get("/v1/secrets/fc/kept")),
            "read many": _outcome(
                stack, lambda: admin.post("/v1/get-secret-value", json={"names": ["/fc/kept"]})
            ),
            "list": _outcome(stack, lambda: admin.get("/v1/items", params={"path": "/fc"})),
            "audit query": _outcome(stack, lambda: admin.get("/v1/audit")),
            "denied: unknown token": _outcome(
                stack,
                lambda: httpx.get(
                    url + "/v1/secrets/fc/kept",
                    headers={"Authorization": "Bearer t-" + "x" * 43},
                    timeout=15,
                ),
            ),
            "denied: failed login": _outcome(
                stack,
                lambda: httpx.post(
                    url + "/v1/auth/login",
                    json={**stack.admin_body, "access_key": "wrong"},
                    timeout=15,
                ),
            ),
            # The Vault-compatible surface appends through the same writer and services.
            "Vault KV write": _outcome(
                stack,
                lambda: httpx.post(
                    url + "/v1/secret/data/fc/vault",
                    json={"data": {"k": "v"}},
                    headers=vault,
                    timeout=15,
                ),
            ),
            "Vault KV read": _outcome(
                stack, lambda: httpx.get(url + "/v1/secret/data/fc/kept", headers=vault, timeout=15)
            ),
            "Vault KV delete": _outcome(
                stack,
                lambda: httpx.delete(
                    url + "/v1/secret/metadata/fc/kept", headers=vault, timeout=15
                ),
            ),
            "Vault AWS login": _outcome(
                stack, lambda: httpx.post(url + "/v1/auth/aws/login", json=vault_login, timeout=15)
            ),
            "Vault token lookup": _outcome(
                stack,
                lambda: httpx.get(url + "/v1/auth/token/lookup-self", headers=vault, timeout=15),
            ),
            "console page": _outcome(stack, lambda: console.get("/ui/secrets")),
            "console create": _outcome(
                stack,
                lambda: console.post(
                    "/ui/secrets/new",
                    data={"csrf": console_csrf, "name": "/fc/console", "value": "y"},
                ),
            ),
            "console sign-in": _outcome(
                stack,
                lambda: signing_in.post(
                    "/ui/login",
                    data={
                        "csrf": sign_in_csrf,
                        "access_id": stack.admin_body["access_id"],
                        "access_key": stack.admin_body["access_key"],
                        "next": "",
                    },
                ),
            ),
        }
        assert outcomes == dict.fromkeys(outcomes, 503)

        # Whole lines only: a write that ran out of room midway was cut back.
        lines = stack.file_lines()
        assert all(line.endswith(b"\n") for line in lines)
        logged = [json.loads(line) for line in lines]
        assert len(logged) > lines_before
        # Nothing of the refused requests is anywhere in the trail.
        assert not {e["request_id"] for e in logged} & set(stack.failed_ids)

        stack.disk.empty(stack.pid)
        # Nothing was changed: no secret, no new version, no role, no token, no spent signature.
        assert admin.get("/v1/secrets/fc/new").status_code == 404
        assert admin.get("/v1/secrets/fc/vault").status_code == 404
        kept = admin.get("/v1/secrets/fc/kept").json()
        assert (kept["value"], kept["version"]) == (SECRET_VALUE, 1)
        assert admin.get("/v1/roles/r").status_code == 404
        assert _sql(stack.database_url, "SELECT count(*) FROM tokens")[0][0] == tokens_before
        replayed = httpx.post(url + "/v1/auth/login", json=aws_login, timeout=15)
        assert replayed.status_code == 200, replayed.text
        replayed = httpx.post(url + "/v1/auth/aws/login", json=vault_login, timeout=15)
        assert replayed.status_code == 200, replayed.text
        created = admin.post("/v1/secrets", json={"name": "/fc/new", "value": "x"})
        assert created.status_code == 201
        assert console.get("/ui/secrets").status_code == 200
    finally:
        console.close()
        signing_in.close()
    _assert_trail_holds_no_failed_request_nor_secret(stack)


def _assert_trail_holds_no_failed_request_nor_secret(stack: Stack) -> None:
    """The chain, the journals and the file: no event of a refused request; no value, token
    or access key (a token appears only as its keyed digest)."""
    token = stack.admin.headers["Authorization"].removeprefix("Bearer ")
    forbidden = [SECRET_VALUE, token, stack.admin_body["access_key"], "t-" + "x" * 43]
    chained = _sql(stack.database_url, "SELECT * FROM audit_events")
    journals = Path(stack.database_url.removeprefix("sqlite:///") + ".audit-journal")
    journaled = (
        b"".join(p.read_bytes() for p in journals.glob("*")).decode()
        if stack.database_url.startswith("sqlite")
        else ""
    )
    file_text = b"".join(stack.file_lines()).decode()
    for place, content in (("chain", repr(chained)), ("journals", journaled), ("file", file_text)):
        for request_id in stack.failed_ids:
            assert request_id not in content, f"{place} holds refused request {request_id}"
        for secret in forbidden:
            assert secret not in content, f"{place} holds a secret ({secret[:6]}…)"
    verified = subprocess.run(
        [STRONGROOM, "audit", "verify", "--json"],
        env=stack.server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(verified.stdout)["ok"] is True, verified.stdout + verified.stderr


# -- the file itself: owner only, and only ours ----------------------------------------------


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _refusal(tmp_path: Path, audit_file: Path) -> subprocess.CompletedProcess[str]:
    """``strongroom server`` with ``audit_file``, on a database of its own, expected to stop:
    in one line (SPEC section 1), before it touches the database."""
    database = tmp_path / (audit_file.name + ".sqlite")
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{database}",
            "STRONGROOM_MASTER_KEY": _key(),
            "STRONGROOM_AUDIT_FILE": str(audit_file),
        },
        cwd=tmp_path,
    )
    refused = subprocess.run(
        [STRONGROOM, "server", "--port", str(server.port)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Warnings (JSON log events) name STRONGROOM_* variables of the test run that no setting
    # reads.
    lines = [
        line
        for line in refused.stderr.splitlines()
        if not line.startswith("warning:") and '"event": "unknown_setting"' not in line
    ]
    assert len(lines) == 1, refused.stderr
    assert not database.exists()
    refused.stderr = lines[0]
    return refused


def test_the_audit_file_is_created_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """Attack: a world-writable umask (0000) must not make the trail readable (who read what,
    from where) or writable (forged lines) by other users."""
    audit_file = tmp_path / "logs" / "audit.jsonl"
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": _key(),
            "STRONGROOM_AUDIT_FILE": str(audit_file),
        },
        cwd=tmp_path,
    )
    created = subprocess.run(
        [STRONGROOM, "bootstrap", "--json"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        umask=0,
    )
    assert json.loads(created.stdout)["access_id"]
    assert audit_file.stat().st_mode & 0o777 == 0o600
    assert audit_file.parent.stat().st_mode & 0o777 == 0o700
    # A file found wider (an operator's touch, an old version) is tightened at start.
    audit_file.chmod(0o666)
    server.start()
    try:
        assert audit_file.stat().st_mode & 0o777 == 0o600
        login = httpx.post(
            server.url + "/v1/auth/login",
            json={"access_id": "p-000000000000", "access_type": "access_key", "access_key": "x"},
        )
        assert login.status_code == 401
    finally:
        server.stop()
    assert b"p-000000000000" in audit_file.read_bytes()


def test_an_audit_file_that_is_a_link_or_another_users_is_refused(tmp_path: Path) -> None:
    """Attack: whoever can plant a link at the path, or own the file, can send the trail
    elsewhere, read it, or rewrite it behind the server's back. The server refuses to start,
    with one clear line, and writes nothing through the link."""
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_bytes(b"")
    link = tmp_path / "link.jsonl"
    link.symlink_to(elsewhere)
    refused = _refusal(tmp_path, link)
    assert refused.returncode == 1, refused.stderr
    assert "symbolic link" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert elsewhere.read_bytes() == b""

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    refused = _refusal(tmp_path, fifo)
    assert refused.returncode == 1
    assert "not a regular file" in refused.stderr

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_bytes(b"")
    os.chown(theirs, 65534, 65534)
    refused = _refusal(tmp_path, theirs)
    assert refused.returncode == 1
    assert "belongs to another user" in refused.stderr
    assert "Traceback" not in refused.stderr
