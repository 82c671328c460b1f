"""Least exposure, attacked against a real ``strongroom server`` (SPEC sections 4 and 6).

- A caller who may only *list* auth methods and roles learns their names and types, not the
  accounts, roles, addresses and STS endpoint an auth method admits nor its access ID (what a
  stranger needs to aim a login or a lock-out at it), nor what a role is for. With ``read`` on
  an entry, the list shows it as ``get`` does. The CLI's and the console's lists still work.
- ``sts_url`` cannot be unset, nor set to anything but an allowed STS endpoint.
- Everything the server creates under its data folder is owner-only, whatever the umask; and
  so are ``strongroom server --dev``'s data folder and master key.

The exposure tests run on SQLite and PostgreSQL (one server per database for the module);
the file tests on SQLite, the only database with files of its own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_login_processes import Server
from tests.support.databases import fresh_database_url

pytestmark = pytest.mark.slow

IAM_METHOD = {
    "type": "aws_iam",
    "name": "prod-web",
    "bound_aws_account_id": ["123456789012"],
    "bound_role_name": ["prod-web-*"],
    "bound_ips": ["10.20.0.0/16"],
    "sts_url": "https://sts.eu-west-1.amazonaws.com",
}


@dataclass
class Stack:
    server: Server
    root: Path
    admin: httpx.Client
    lister: httpx.Client  # may list every auth method and role, read one of each
    lister_credentials: dict[str, str]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("least-exposure")
    data = root / "data"
    data.mkdir()
    # The server makes its SQLite file itself: that file's mode is under test too.
    with fresh_database_url(request.param, request, data, migrated=False) as database_url:
        env = {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_LOG_FORMAT": "json",
            "STRONGROOM_LOGIN_PROCESSES": "0",
        }
        server = Server(env, workers=1, cwd=root)
        admin_credentials = server.bootstrap()
        server.start()
        admin = server.client_as(admin_credentials)
        try:
            for body in (IAM_METHOD, {"type": "api_key", "name": "visible-key"}):
                assert admin.post("/v1/auth-methods", json=body).status_code == 201
            lister_key = admin.post("/v1/auth-methods", json={"type": "api_key", "name": "lister"})
            for role, description in (("payments", "reads the card vault"), ("lister", "")):
                created = admin.post("/v1/roles", json={"name": role, "description": description})
                assert created.status_code == 201
            for rule in (
                {"rule_type": "auth-method-rule", "path": "/*", "capabilities": ["list"]},
                {"rule_type": "auth-method-rule", "path": "/visible-key", "capabilities": ["read"]},
                {"rule_type": "role-rule", "path": "/*", "capabilities": ["list"]},
                {"rule_type": "role-rule", "path": "/lister", "capabilities": ["read"]},
            ):
                assert admin.put("/v1/roles/lister/rules", json=rule).status_code == 200
            associated = admin.post("/v1/roles/lister/associations", json={"auth_method": "lister"})
            assert associated.status_code == 201
            credentials = lister_key.json()
            lister = server.client_as(credentials)
            try:
                yield Stack(server, root, admin, lister, credentials)
            finally:
                lister.close()
        finally:
            admin.close()
            log = server.stop()
            server.kill_leftovers()
            assert "Traceback" not in log, log


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def test_listing_auth_methods_shows_names_and_types_only_without_read(stack: Stack) -> None:
    """Reconnaissance: a caller with ``list`` on every auth method (today shown each one's
    bounds, bound_ips, sts_url and access ID) sees names and types; details need ``read``."""
    listed = stack.lister.get("/v1/auth-methods")
    assert listed.status_code == 200
    methods = by_name(listed.json()["auth_methods"])
    assert methods["prod-web"] == {"name": "prod-web", "type": "aws_iam"}
    assert methods["lister"] == {"name": "lister", "type": "api_key"}
    # With read on it, the list shows it as get does (associations are get's alone).
    readable = methods["visible-key"]
    shown = stack.lister.get("/v1/auth-methods/visible-key").json()
    assert readable == {key: value for key, value in shown.items() if key != "associations"}
    assert readable["access_id"].startswith("p-")
    # ... and get without read is refused.
    assert stack.lister.get("/v1/auth-methods/prod-web").status_code == 403
    # An admin (read everywhere) still gets every detail in the list.
    full = by_name(stack.admin.get("/v1/auth-methods").json()["auth_methods"])["prod-web"]
    assert full["sts_url"] == "https://sts.eu-west-1.amazonaws.com"
    assert full["bound_ips"] == ["10.20.0.0/16"]


def test_listing_roles_shows_names_only_without_read(stack: Stack) -> None:
    """Reconnaissance: a caller with ``list`` on every role learns no role's purpose."""
    roles = by_name(stack.lister.get("/v1/roles").json()["roles"])
    assert roles["payments"] == {"name": "payments"}
    assert set(roles["lister"]) == {"name", "description", "created_at"}
    assert stack.lister.get("/v1/roles/payments").status_code == 403
    everything = by_name(stack.admin.get("/v1/roles").json()["roles"])
    assert everything["payments"]["description"] == "reads the card vault"


def test_the_cli_and_console_lists_work_for_a_list_only_caller(stack: Stack) -> None:
    home = stack.root / f"home-{secrets.token_hex(3)}"
    stack.server.env["STRONGROOM_HOME"] = str(home)
    stack.server.run_cli(
        "configure",
        "--profile",
        "lister",
        "--access-id",
        stack.lister_credentials["access_id"],
        "--access-type",
        "access_key",
        "--access-key",
        stack.lister_credentials["access_key"],
        "--server-url",
        stack.server.url,
    )
    methods = stack.server.run_cli("list-auth-methods", "--profile", "lister").stdout
    assert "prod-web" in methods
    assert "(needs read)" in methods
    assert "123456789012" not in methods
    roles = stack.server.run_cli("list-roles", "--profile", "lister").stdout
    assert "payments" in roles
    assert "card vault" not in roles

    with httpx.Client(base_url=stack.server.url, timeout=15) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/login").text)
        assert csrf
        signed_in = browser.post(
            "/ui/login",
            data={
                "access_id": stack.lister_credentials["access_id"],
                "access_key": stack.lister_credentials["access_key"],
                "csrf": csrf.group(1),
            },
        )
        assert signed_in.status_code == 303
        page = browser.get("/ui/auth-methods")
        assert page.status_code == 200
        assert "prod-web" in page.text
        assert "Needs read access" in page.text
        hidden = stack.admin.get("/v1/auth-methods/prod-web").json()["access_id"]
        assert hidden not in page.text
        roles_page = browser.get("/ui/roles")
        assert roles_page.status_code == 200
        assert "payments" in roles_page.text
        assert "card vault" not in roles_page.text


@pytest.mark.parametrize(
    "sts_url",
    [
        None,  # today stored as null: every login of the method then fails (or worse)
        "",
        "http://169.254.169.254/latest/meta-data/",  # server-side request forgery
        "https://sts.amazonaws.com.evil.example",
    ],
)
def test_sts_url_cannot_be_unset_or_set_to_anything_invalid(
    stack: Stack, sts_url: str | None
) -> None:
    """``null`` was the open door (PATCH stored it); the other values guard what held."""
    patched = stack.admin.patch("/v1/auth-methods/prod-web", json={"sts_url": sts_url})
    assert patched.status_code == 400, patched.text
    assert patched.json()["error"] == "InvalidRequest"
    created = stack.admin.post(
        "/v1/auth-methods", json={**IAM_METHOD, "name": "other-web", "sts_url": sts_url}
    )
    assert created.status_code == 400, created.text
    shown = stack.admin.get("/v1/auth-methods/prod-web").json()
    assert shown["sts_url"] == "https://sts.eu-west-1.amazonaws.com"
    assert stack.admin.get("/v1/auth-methods/other-web").status_code == 404


def test_fields_that_cannot_be_cleared_refuse_null_and_those_that_can_accept_it(
    stack: Stack,
) -> None:
    for field in ("bound_aws_account_id", "bound_ips", "bound_role_name", "description"):
        patched = stack.admin.patch("/v1/auth-methods/prod-web", json={field: None})
        assert patched.status_code == 400, (field, patched.text)
    cleared = stack.admin.patch(
        "/v1/auth-methods/prod-web", json={"jwt_ttl": None, "access_expires": None}
    )
    assert cleared.status_code == 200, cleared.text
    assert stack.admin.get("/v1/auth-methods/prod-web").json()["bound_ips"] == ["10.20.0.0/16"]


# -- files ----------------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Processes started inside inherit ``mask`` (this one has it meanwhile too)."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes_under(folder: Path) -> dict[str, str]:
    """{path relative to ``folder``: octal mode} of everything under it, ``folder`` included."""
    found = {".": oct(stat.S_IMODE(folder.stat().st_mode))}
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a journal chained and removed meanwhile
            found[str(path.relative_to(folder))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def assert_owner_only(folder: Path) -> None:
    modes = modes_under(folder)
    wrong = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (folder / name).is_dir() else "0o600")
    }
    assert not wrong, f"not owner-only (files 0600, folders 0700): {wrong} of {modes}"


def assert_others_cannot_open(folder: Path) -> None:
    """As user nobody, in a child process: no file under ``folder`` opens (read it, or flock
    the writers' lock and stall every write)."""
    if os.geteuid() != 0:
        return  # only root can become another user; the modes above say the same
    files = [str(path) for path in folder.rglob("*") if path.is_file()]
    pid = os.fork()
    if pid == 0:  # the child: exits 0 only if every open is refused
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            for name in files:
                try:
                    os.close(os.open(name, os.O_RDONLY))
                except (FileNotFoundError, PermissionError):
                    continue
                code = 1
        except BaseException:
            code = 2
        os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"user nobody could open one of {files}"


def test_database_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """Disclosure: under ``umask 000`` (today: the database 0644 and its WAL and SHM with it,
    the writers' lock file 0666, the data folder 0777) every local user could read the token
    digests, audit trail and wrapped keys, or flock the lock file and stall every write."""
    data = tmp_path / "data"
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{data / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_LOG_FORMAT": "json",
    }
    server = Server(env, workers=2, cwd=tmp_path)
    with umask(0):
        credentials = server.bootstrap()
        server.start()
    try:
        with server.client_as(credentials) as admin:
            # Writes, reads (audit journals) and logins (login processes) while it runs.
            assert admin.post("/v1/secrets", json={"name": "/a", "value": "v"}).is_success
            for _ in range(20):
                assert admin.get("/v1/secrets/a").status_code == 200
        assert (data / "strongroom.db-wal").exists()
        assert list(data.glob("*.audit-journal/*.jsonl"))
        assert_owner_only(data)
        assert_others_cannot_open(data)
    finally:
        server.stop()
        server.kill_leftovers()
    assert_owner_only(data)


def test_the_dev_servers_data_folder_and_master_key_are_owner_only(tmp_path: Path) -> None:
    """Disclosure: ``strongroom server --dev`` under ``umask 000`` (today a 0777 folder and a
    0644 database next to the master key that decrypts it)."""
    server = Server({}, workers=1, cwd=tmp_path)
    with umask(0):
        server.start("--dev")
    try:
        assert "access key:" in server.log()
        data = tmp_path / "strongroom-data"
        assert (data / "master.key").exists()
        assert (data / "strongroom.db").exists()
        assert_owner_only(data)
    finally:
        server.stop()
        server.kill_leftovers()
