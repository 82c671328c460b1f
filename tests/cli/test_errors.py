"""Every way a command can fail: the message on stderr, the hint, the exit code, no traceback,
and no secret in the output."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, Invoker, RunningServer
from tests.support.moto_sts import free_port


@pytest.fixture
def admin(invoke: Invoker, server: RunningServer) -> Invoker:
    """``invoke`` with the bootstrap admin as profile 'default'."""
    result = invoke.configure_key(server.admin.access_id, server.admin.access_key, server.url)
    assert result.exit_code == 0, result.stderr
    return invoke


def test_no_profile_says_how_to_create_one(invoke: Invoker) -> None:
    result = invoke("get-secret-value", "--name", "/dev/db")
    assert result.exit_code == 1
    assert "error: no profile named 'default'" in result.stderr
    assert "hint: create it: strongroom configure --profile default" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_profile_comes_from_the_environment(invoke: Invoker) -> None:
    result = invoke("list-roles", env={"STRONGROOM_PROFILE": "ops"})
    assert result.exit_code == 1
    assert "no profile named 'ops'" in result.stderr


def test_server_down_names_the_url(invoke: Invoker, server: RunningServer) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    invoke.configure_key("p-abcdefabcdef", "k", down)
    result = invoke("list-roles")
    assert result.exit_code == 1
    assert f"error: cannot reach the Strongroom server at {down}" in result.stderr
    assert "hint: check that the server is running" in result.stderr
    # STRONGROOM_URL overrides the profile's server_url …
    assert invoke("list-roles", env={"STRONGROOM_URL": server.url}).stderr.startswith(
        "can't setup strongroom client"  # reached the server: the made-up key is refused
    )
    # … and --server-url overrides both.
    flag = invoke("list-roles", "--server-url", down, env={"STRONGROOM_URL": server.url})
    assert down in flag.stderr


def test_wrong_access_key_prints_the_spec_text(invoke: Invoker, server: RunningServer) -> None:
    invoke.configure_key(server.admin.access_id, "not-the-key", server.url)
    result = invoke("list-items")
    assert result.exit_code == 1
    assert result.stderr == (
        "can't setup strongroom client: failed to get credentials.\n"
        "error: Desc: Failed to authenticate token based access.\n"
        "Status 401 Unauthorized, Error: AuthenticationFailed.\n"
        "Message: access authentication failed\n"
    )
    assert "not-the-key" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("get-secret-value",),
        ("get-secret-value", "--name", "/a/../b"),
        ("get-secret-value", "--name", "/a", "--version", "0"),
        ("set-role-rule", "--role-name", "r", "--path", "/x", "--capability", "fly"),
        ("set-role-rule", "--role-name", "r", "--path", "/x"),
        (
            "set-role-rule",
            "--role-name",
            "r",
            "--path",
            "/x",
            "--capability",
            "read",
            "--rule-type",
            "secret-rule",
        ),
        ("create-secret", "--name", "/a", "--value", "x", "--file", "/etc/hostname"),
        ("create-secret", "--name", "/a"),
        ("get-role", "--name", "a/b"),
        ("create-auth-method-aws-iam", "--name", "x"),
        (
            "create-auth-method-aws-iam",
            "--name",
            "x",
            "--bound-aws-account-id",
            "1",
            "--jwt-ttl",
            "0",
        ),
        ("update-auth-method-aws-iam", "--name", "x"),
        ("assoc-role-am", "--role-name", "r", "--am-name", "a", "--sub-claims", "role_name"),
        ("list-items", "--path", "/a/../b"),
        ("list-roles", "--server-url", "ftp://example.com"),
        ("list-roles", "--no-such-flag"),
        ("configure", "--access-id", "p-abcdefabcdef", "--access-type", "password"),
        ("configure", "--access-id", "nope", "--access-type", "aws_iam"),
        (
            "configure",
            "--access-id",
            "p-abcdefabcdef",
            "--access-type",
            "aws_iam",
            "--access-key",
            "k",
        ),
        ("configure", "--access-id", "p-abcdefabcdef", "--access-type", "access_key"),
        (
            "configure",
            "--profile",
            "../evil",
            "--access-id",
            "p-abcdefabcdef",
            "--access-type",
            "aws_iam",
        ),
    ],
)
def test_wrong_usage_exits_2(admin: Invoker, args: tuple[str, ...]) -> None:
    result = admin(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unreadable_value_files_are_usage_errors(admin: Invoker, tmp_path: Path) -> None:
    binary = tmp_path / "key.der"
    binary.write_bytes(b"\x30\x82\xff\xfe")
    for path, problem in [(binary, "is not UTF-8 text"), (tmp_path / "missing", "cannot read")]:
        result = admin("create-secret", "--name", "/a/b", "--file", str(path))
        assert result.exit_code == 2
        assert problem in " ".join(result.stderr.replace("│", " ").split())


def test_forbidden_says_so_and_what_to_do(invoke: Invoker, server: RunningServer) -> None:
    name = f"reader-{secrets.token_hex(4)}"
    server.admin.call("POST", "/v1/roles", json={"name": name})
    server.admin.call(
        "PUT", f"/v1/roles/{name}/rules", json={"path": f"/{name}/*", "capabilities": ["read"]}
    )
    access_id, key = server.admin.api_key_method(name, role=name)
    invoke.configure_key(access_id, key, server.url)
    result = invoke("create-secret", "--name", f"/{name}/new", "--value", "v")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 403 Forbidden: ")
    assert "hint: the profile's access roles do not allow this" in result.stderr
    # Reading a missing item one may not read is also 403 (no existence oracle).
    assert invoke("get-secret-value", "--name", "/elsewhere/x").exit_code == 1


def test_not_found(admin: Invoker) -> None:
    result = admin("get-role", "--name", f"missing-{secrets.token_hex(4)}")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 404 NotFound: no role named")
    assert "hint: check the name" in result.stderr
    missing = admin("get-secret-value", "--name", "/no/such/secret")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: 404 NotFound: ")
    assert missing.stdout == ""


def test_conflict(admin: Invoker) -> None:
    name = f"/conflict/{secrets.token_hex(4)}"
    assert admin("create-secret", "--name", name, "--value", "a").exit_code == 0
    again = admin("create-secret", "--name", name, "--value", "b")
    assert again.exit_code == 1
    assert again.stderr.startswith("error: 409 Conflict: ")
    stale = admin("update-secret-val", "--name", name, "--value", "c", "--expected-version", "7")
    assert stale.exit_code == 1
    assert "409 Conflict" in stale.stderr


def test_server_validation_errors_are_exit_1_with_the_servers_message(admin: Invoker) -> None:
    result = admin(
        "create-auth-method-aws-iam",
        "--name",
        f"bad-{secrets.token_hex(3)}",
        "--bound-aws-account-id",
        "not-an-account",
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 400 ")


def test_a_rule_too_complex_to_check_says_what_to_do(admin: Invoker) -> None:
    name = f"dense-{secrets.token_hex(3)}"
    assert admin("create-role", "--name", name).exit_code == 0
    result = admin(
        "set-role-rule",
        "--role-name",
        name,
        "--path",
        "/*a*b*c*d*e*f*g*h*i",
        "--capability",
        "read",
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 400 RuleTooComplex: a rule path has at most 8")
    assert "hint: the rules involved" in result.stderr


def test_a_broken_profile_file_is_reported(invoke: Invoker) -> None:
    path = invoke.home / "profiles" / "default.toml"
    path.parent.mkdir(parents=True)
    path.write_text("access_id = [not toml")
    result = invoke("list-roles")
    assert result.exit_code == 1
    assert "is not valid TOML" in result.stderr
    assert "strongroom configure --profile default" in result.stderr


def test_real_process_exit_codes(tmp_path: Path) -> None:
    """Exit codes as a shell sees them, from the installed executable."""
    cli = Cli(tmp_path / "home")
    assert cli.run("--help").returncode == 0
    usage = cli.run("get-secret-value")
    assert usage.returncode == 2
    assert "--name" in usage.stderr
    missing = cli.run("list-roles")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: no profile named 'default'")
