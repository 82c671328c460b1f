"""The tutorial of the issue, typed as a user types it, through the installed executable.

An administrator's machine and an EC2 instance are two STRONGROOM_HOMEs; the instance's IAM
role is the AWS credentials in its environment (moto, signatures checked). The "role changed"
step swaps in other-role's credentials: the cached token still works until the cache file is
removed, then the fresh login fails the bound-role-name check with SPEC section 8's message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.conftest import ACCOUNT_ID, AwsWorld, Cli, RunningServer

pytestmark = pytest.mark.slow

LOGIN_FAILED = (
    "can't setup strongroom client: failed to get credentials.\n"
    "error: Desc: Failed to authenticate token based access.\n"
    "Status 401 Unauthorized, Error: AuthenticationFailed.\n"
    "Message: access authentication failed\n"
)


def test_tutorial(server: RunningServer, aws: AwsWorld, tmp_path: Path) -> None:
    admin = Cli(tmp_path / "admin-home", {"STRONGROOM_URL": server.url})
    configured = admin.run(
        "configure",
        "--profile",
        "default",
        "--access-id",
        server.admin.access_id,
        "--access-type",
        "access_key",
        "--access-key",
        "-",
        stdin=server.admin.access_key + "\n",
    )
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout == "Profile default successfully configured\n"

    created = admin.run(
        "create-auth-method-aws-iam",
        "--name",
        "iamAuth1",
        "--bound-aws-account-id",
        ACCOUNT_ID,
        "--bound-role-name",
        "app-role",
        "--sts-url",
        aws.url,
    )
    assert created.returncode == 0, created.stderr
    match = re.fullmatch(r"Access ID: (p-[a-z0-9]{12})\n", created.stdout)
    assert match, created.stdout
    access_id = match[1]

    for args, expected in [
        (("create-role", "--name", "devReaders"), "Role devReaders was successfully created"),
        (
            ("assoc-role-am", "--role-name", "devReaders", "--am-name", "iamAuth1"),
            r"Association ass-[a-z0-9]{20} was successfully created",
        ),
        (
            (
                "set-role-rule",
                "--role-name",
                "devReaders",
                "--path",
                "/dev/*",
                "--capability",
                "read",
                "--capability",
                "list",
            ),
            "The requested rule was successfully set to the role devReaders",
        ),
        (
            ("create-secret", "--name", "/dev/db-password", "--value", "s3cr3t-tutorial"),
            "A new secret named /dev/db-password was successfully created",
        ),
    ]:
        result = admin.run(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert re.fullmatch(expected + "\n", result.stdout), result.stdout

    # On the instance: the IAM role is the only credential.
    instance = Cli(
        tmp_path / "instance-home",
        {"STRONGROOM_URL": server.url, **aws.app.credentials.environ()},
    )
    configured = instance.run(
        "configure",
        "--profile",
        "default",
        "--access-id",
        access_id,
        "--access-type",
        "aws_iam",
        "--aws-sts-url",
        aws.url,
    )
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout == "Profile default successfully configured\n"

    read = instance.run("get-secret-value", "--name", "/dev/db-password")
    assert read.returncode == 0, read.stderr
    assert read.stdout == "s3cr3t-tutorial\n"
    assert read.stderr == ""
    cache_file = instance.home / ".tmp_creds" / f"default-{access_id}"
    assert cache_file.exists()

    # The instance's role changes. The cached token is still valid (as in Akeyless) …
    instance.env |= aws.other.credentials.environ()
    assert instance.run("get-secret-value", "--name", "/dev/db-password").returncode == 0

    # … until the cache file is removed: the fresh login is refused.
    cache_file.unlink()
    refused = instance.run("get-secret-value", "--name", "/dev/db-password")
    assert refused.returncode == 1
    assert refused.stderr == LOGIN_FAILED
    assert refused.stdout == ""
    assert not cache_file.exists()
