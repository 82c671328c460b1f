"""Every client command of SPEC section 8 against the real server, as the bootstrap admin:
human output, --json output, and what the server ends up holding."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import __version__
from strongroom.cli.commands import COMMANDS
from tests.cli.conftest import ACCOUNT_ID, Cli, Invoker, RunningServer, clean_environ
from tests.e2e.server_process import STRONGROOM


@pytest.fixture
def admin(invoke: Invoker, server: RunningServer) -> Invoker:
    result = invoke.configure_key(
        server.admin.access_id, server.admin.access_key, server.url, "--profile", "admin"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Profile admin successfully configured\n"
    invoke.env["STRONGROOM_PROFILE"] = "admin"
    return invoke


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)


def ok(invoker: Invoker, *args: str, stdin: str | None = None) -> str:
    result = invoker(*args, stdin=stdin)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return str(result.stdout)


def test_auth_method_lifecycle(admin: Invoker, server: RunningServer, unique: str) -> None:
    name = f"iam-{unique}"
    created = ok(
        admin,
        "create-auth-method-aws-iam",
        "--name",
        name,
        "--bound-aws-account-id",
        ACCOUNT_ID,
        "--bound-aws-account-id",
        "210987654321",
        "--bound-role-name",
        "web-*",
        "--bound-arn",
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/*",
        "--bound-role-id",
        "AROAEXAMPLE",
        "--bound-resource-id",
        "i-*",
        "--bound-user-name",
        "ci",
        "--bound-user-id",
        "AIDAEXAMPLE",
        "--bound-ips",
        "10.0.0.0/8",
        "--bound-ips",
        "127.0.0.1/32",
        "--jwt-ttl",
        "15",
        "--access-expires",
        "2099-01-01T00:00:00Z",
        "--description",
        "web servers",
    )
    access_id = re.fullmatch(r"Access ID: (p-[a-z0-9]{12})\n", created)
    assert access_id, created

    shown = json.loads(ok(admin, "get-auth-method", "--name", name, "--json"))
    assert shown["access_id"] == access_id[1]
    assert shown["bound_aws_account_id"] == [ACCOUNT_ID, "210987654321"]
    assert shown["bound_ips"] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert shown["jwt_ttl"] == 15
    assert "web servers" in ok(admin, "get-auth-method", "--name", name)

    assert f"Auth method {name} was successfully updated" in ok(
        admin,
        "update-auth-method-aws-iam",
        "--name",
        name,
        "--bound-role-name",
        "api-*",
        "--jwt-ttl",
        "20",
    )
    updated = json.loads(ok(admin, "get-auth-method", "--name", name, "--json"))
    assert updated["bound_role_name"] == ["api-*"]
    assert updated["jwt_ttl"] == 20
    assert updated["bound_arn"] == [f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/*"]  # untouched

    listing = json.loads(ok(admin, "list-auth-methods", "--json"))["auth_methods"]
    assert name in {m["name"] for m in listing}
    assert name in ok(admin, "list-auth-methods")

    assert ok(admin, "delete-auth-method", "--name", name) == (
        f"Auth method {name} was successfully deleted\n"
    )
    assert admin("get-auth-method", "--name", name).exit_code == 1


def test_api_key_is_shown_once_and_works(
    admin: Invoker, server: RunningServer, unique: str, tmp_path: Path
) -> None:
    name = f"key-{unique}"
    result = admin("create-auth-method-api-key", "--name", name, "--jwt-ttl", "5")
    assert result.exit_code == 0
    match = re.fullmatch(r"Access ID: (p-[a-z0-9]{12})\nAccess Key: (\S{43,})\n", result.stdout)
    assert match, result.stdout
    assert "not shown again" in result.stderr
    assert match[2] not in ok(admin, "get-auth-method", "--name", name)
    # The new key logs in (its token carries no roles, so it lists nothing).
    login = admin(
        "configure",
        "--profile",
        "app",
        "--access-id",
        match[1],
        "--access-type",
        "access_key",
        "--access-key",
        "-",
        "--server-url",
        server.url,
        stdin=match[2] + "\n",
    )
    assert login.exit_code == 0
    shown = admin("auth", "--profile", "app", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["roles"] == []
    assert 0 < json.loads(shown.stdout)["expires_in"] <= 300


def test_role_rules_and_associations(admin: Invoker, unique: str) -> None:
    role, method = f"role-{unique}", f"am-{unique}"
    ok(admin, "create-auth-method-api-key", "--name", method)
    assert ok(admin, "create-role", "--name", role, "--description", "readers") == (
        f"Role {role} was successfully created\n"
    )
    assert (
        ok(
            admin,
            "set-role-rule",
            "--role-name",
            role,
            "--path",
            f"/{unique}/*",
            "--capability",
            "read",
            "--capability",
            "list",
        )
        == f"The requested rule was successfully set to the role {role}\n"
    )
    ok(
        admin,
        "set-role-rule",
        "--role-name",
        role,
        "--path",
        f"/{method}",
        "--capability",
        "read",
        "--rule-type",
        "auth-method-rule",
        "--ttl",
        "60",
    )
    created = ok(
        admin,
        "assoc-role-am",
        "--role-name",
        role,
        "--am-name",
        method,
        "--sub-claims",
        "role_name=web-*,api-*",
        "--sub-claims",
        "account_id=123456789012",
    )
    assoc = re.fullmatch(r"Association (ass-[a-z0-9]{20}) was successfully created\n", created)
    assert assoc, created

    shown = json.loads(ok(admin, "get-role", "--name", role, "--json"))
    assert shown["description"] == "readers"
    rules = {(r["rule_type"], r["path"]): r for r in shown["rules"]}
    assert rules[("item-rule", f"/{unique}/*")]["capabilities"] == ["read", "list"]
    assert rules[("auth-method-rule", f"/{method}")]["expires_at"] is not None
    assert shown["associations"][0]["assoc_id"] == assoc[1]
    assert shown["associations"][0]["sub_claims"] == {
        "role_name": ["web-*", "api-*"],
        "account_id": ["123456789012"],
    }
    table = ok(admin, "get-role", "--name", role)
    assert assoc[1] in table
    assert f"/{unique}/*" in table
    assert role in ok(admin, "list-roles")
    assert role in {r["name"] for r in json.loads(ok(admin, "list-roles", "--json"))["roles"]}

    assert (
        ok(
            admin,
            "delete-role-rule",
            "--role-name",
            role,
            "--path",
            f"/{method}",
            "--rule-type",
            "auth-method-rule",
        )
        == f"The rule was successfully deleted from the role {role}\n"
    )
    assert ok(admin, "delete-assoc", "--role-name", role, "--assoc-id", assoc[1]) == (
        f"Association {assoc[1]} was successfully deleted\n"
    )
    after = json.loads(ok(admin, "get-role", "--name", role, "--json"))
    assert after["associations"] == []
    assert [r["path"] for r in after["rules"]] == [f"/{unique}/*"]
    assert ok(admin, "delete-role", "--name", role) == f"Role {role} was successfully deleted\n"
    assert admin("get-role", "--name", role).exit_code == 1


def test_secret_lifecycle(admin: Invoker, unique: str, tmp_path: Path) -> None:
    name = f"/{unique}/app/db-password"
    assert (
        ok(
            admin,
            "create-secret",
            "--name",
            name,
            "--value",
            "-",
            "--description",
            "db",
            "--tags",
            "prod,db",
            "--tags",
            "team-a",
            stdin="first\n",
        )
        == f"A new secret named {name} was successfully created\n"
    )
    assert ok(admin, "get-secret-value", "--name", name) == "first\n"

    value_file = tmp_path / "value.txt"
    value_file.write_text("line one\nline two\n", encoding="utf-8")
    assert (
        ok(
            admin,
            "update-secret-val",
            "--name",
            name,
            "--file",
            str(value_file),
            "--expected-version",
            "1",
        )
        == f"The value of secret {name} was successfully updated (version 2)\n"
    )
    assert ok(admin, "get-secret-value", "--name", name) == "line one\nline two\n\n"
    assert ok(admin, "get-secret-value", "--name", name, "--version", "1") == "first\n"
    assert json.loads(ok(admin, "get-secret-value", "--name", name, "--json")) == {
        name: "line one\nline two\n"
    }

    other = f"/{unique}/app/api-key"
    ok(admin, "create-secret", "--name", other.lstrip("/"), "--value", "ünïcødé ✓")
    assert ok(admin, "get-secret-value", "--name", other) == "ünïcødé ✓\n"
    assert json.loads(ok(admin, "get-secret-value", "--name", name, "--name", other)) == {
        name: "line one\nline two\n",
        other: "ünïcødé ✓",
    }

    described = json.loads(ok(admin, "describe-item", "--name", name, "--json"))
    assert described["version"] == 2
    assert described["tags"] == ["prod", "db", "team-a"]
    assert "line one" not in ok(admin, "describe-item", "--name", name)

    top = json.loads(ok(admin, "list-items", "--path", f"/{unique}", "--json"))
    assert top["folders"] == [f"/{unique}/app"]
    assert top["items"] == []
    deep = json.loads(ok(admin, "list-items", "--path", f"/{unique}", "--recursive", "--json"))
    assert sorted(i["name"] for i in deep["items"]) == [other, name]
    assert name in ok(admin, "list-items", "--path", f"/{unique}/app")

    assert ok(admin, "delete-item", "--name", name, "--version", "1") == (
        f"Item {name} version 1 was successfully deleted\n"
    )
    assert admin("get-secret-value", "--name", name, "--version", "1").exit_code == 1
    assert ok(admin, "delete-item", "--name", name) == f"Item {name} was successfully deleted\n"
    assert admin("get-secret-value", "--name", name).exit_code == 1
    assert ok(admin, "list-items", "--path", f"/{unique}/nothing") == ""


def test_value_from_stdin_keeps_inner_newlines(admin: Invoker, unique: str) -> None:
    name = f"/{unique}/pem"
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    ok(admin, "create-secret", "--name", name, "--value", "-", stdin=pem + "\n")
    assert ok(admin, "get-secret-value", "--name", name) == pem + "\n"


def test_help_is_there_for_every_command(invoke: Invoker) -> None:
    overview = invoke("--help")
    assert overview.exit_code == 0
    for name, _, _ in COMMANDS:
        assert name in overview.stdout
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        assert "--profile" in result.stdout, name
        assert "--json" in result.stdout, name


def _help_pages(invoke: Invoker) -> Iterator[tuple[str, str]]:
    yield "strongroom", invoke("--help", env={"COLUMNS": "80"}).stdout
    for name, _, _ in COMMANDS:
        yield name, invoke(name, "--help", env={"COLUMNS": "80"}).stdout
    for group, sub in (("db", "upgrade"), ("keys", "rotate"), ("audit", "verify")):
        yield f"{group} {sub}", invoke(group, sub, "--help", env={"COLUMNS": "80"}).stdout


def test_help_fits_80_columns_and_shows_flags_without_a_type(invoke: Invoker) -> None:
    for page, text in _help_pages(invoke):
        assert "<bool>" not in text, page  # a flag takes no value: no type beside it
        too_wide = [line for line in text.splitlines() if len(line) > 80]
        assert not too_wide, (page, too_wide)


def test_version(invoke: Invoker) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"strongroom {__version__}\n"


def test_shell_completion_is_offered(cli: Cli) -> None:
    # --show-completion prints the script of the shell it runs under, which typer finds among
    # the command's parent processes (it takes no shell name: a trailing "bash" is ignored).
    # Run from bash, whatever started the tests (make's sh is a shell typer has no script for).
    # "; true" keeps bash as the parent rather than letting it exec the command.
    shown = subprocess.run(
        ["bash", "-c", '"$0" --show-completion; true', STRONGROOM],
        env=clean_environ({"STRONGROOM_HOME": str(cli.home)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_STRONGROOM_COMPLETE" in shown.stdout
    assert "complete -o default -F" in shown.stdout  # bash's script


def test_errors_are_json_with_json(invoke: Invoker) -> None:
    result = invoke("get-secret-value", "--name", "/x", "--json", "--profile", "nobody")
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["error"] == "Profile"
    assert "nobody" in error["message"]
