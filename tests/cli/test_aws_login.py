"""The aws_iam login of the CLI: the signed request, its encoding, and the credential chain
(environment variables, and EC2 instance metadata with IMDSv2) against moto and the server."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from strongroom.auth.aws_iam import decode_cloud_id, vet_sts_request
from strongroom.cli.aws_login import (
    CREDENTIAL_SOURCES,
    DEFAULT_STS_URL,
    LOGIN_NONCE_HEADER,
    AwsCredentials,
    normalize_sts_url,
    sign_get_caller_identity,
    sts_region,
)
from strongroom.cli.errors import AwsCredentialsError
from tests.cli.conftest import ACCOUNT_ID, AwsWorld, Cli, Invoker, RunningServer
from tests.cli.imds import InstanceMetadataService

FAKE = AwsCredentials("ASIAFAKEEXAMPLE00001", "fake-secret", "FAKE-SESSION-TOKEN")


@pytest.mark.parametrize(
    ("url", "explicit", "region"),
    [
        ("https://sts.amazonaws.com/", None, "us-east-1"),
        ("https://sts.eu-west-1.amazonaws.com/", None, "eu-west-1"),
        ("https://sts.us-gov-west-1.amazonaws.com", None, "us-gov-west-1"),
        ("https://sts.cn-north-1.amazonaws.com.cn/", None, "cn-north-1"),
        ("https://sts-fips.us-east-2.amazonaws.com/", None, "us-east-2"),
        ("http://127.0.0.1:5000/", None, "us-east-1"),
        ("http://127.0.0.1:5000/", "ap-south-1", "ap-south-1"),
        ("https://sts.eu-west-1.amazonaws.com/", "eu-west-2", "eu-west-2"),
    ],
)
def test_region_comes_from_the_sts_url_unless_set(
    url: str, explicit: str | None, region: str
) -> None:
    assert sts_region(url, explicit) == region


def test_sts_url_is_normalised_to_path_slash() -> None:
    assert normalize_sts_url(None) == DEFAULT_STS_URL
    assert normalize_sts_url("https://sts.eu-west-1.amazonaws.com") == (
        "https://sts.eu-west-1.amazonaws.com/"
    )
    with pytest.raises(AwsCredentialsError):
        normalize_sts_url("https://sts.amazonaws.com/?Action=AssumeRole")
    with pytest.raises(AwsCredentialsError):
        normalize_sts_url("file:///etc/passwd")


def test_cloud_id_has_the_akeyless_layout() -> None:
    signed = sign_get_caller_identity(FAKE, sts_url=DEFAULT_STS_URL, region="us-east-1")
    outer = json.loads(base64.b64decode(signed.cloud_id()))
    assert set(outer) == {
        "sts_request_method",
        "sts_request_url",
        "sts_request_body",
        "sts_request_headers",
    }
    assert outer["sts_request_method"] == "POST"
    assert base64.b64decode(outer["sts_request_url"]) == b"https://sts.amazonaws.com/"
    assert base64.b64decode(outer["sts_request_body"]) == (
        b"Action=GetCallerIdentity&Version=2011-06-15"
    )
    headers = json.loads(base64.b64decode(outer["sts_request_headers"]))
    assert all(isinstance(v, list) and len(v) == 1 for v in headers.values())
    assert "Host" not in headers
    assert headers["Content-Type"] == ["application/x-www-form-urlencoded; charset=utf-8"]
    assert headers["X-Amz-Security-Token"] == ["FAKE-SESSION-TOKEN"]
    authorization = headers["Authorization"][0]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=ASIAFAKEEXAMPLE00001/")
    assert "/us-east-1/sts/aws4_request" in authorization
    assert "x-strongroom-server-id" not in authorization


def test_server_id_is_signed_and_passes_the_servers_vetting() -> None:
    signed = sign_get_caller_identity(
        FAKE, sts_url=DEFAULT_STS_URL, region="us-east-1", server_id="vault.example.com"
    )
    headers = dict(signed.headers)
    assert headers["X-Strongroom-Server-ID"] == "vault.example.com"
    signed_headers = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "x-strongroom-server-id" in signed_headers.split(";")
    # The server's own pure vetting accepts it (checks 1-5 and 7 of SPEC section 3).
    vetted = vet_sts_request(
        decode_cloud_id(signed.cloud_id()),
        sts_url="https://sts.amazonaws.com",
        server_id="vault.example.com",
        now=datetime.now(UTC),
    )
    assert vetted.access_key_id == FAKE.access_key


def test_every_login_signs_a_fresh_nonce() -> None:
    """Two logins in one X-Amz-Date second (botocore's clock fixed) still sign differently:
    the server would refuse the second of two identical signed requests as a replay."""
    moment = datetime(2026, 11, 27, 19, 43, 50, tzinfo=UTC)
    # botocore's clock is naive UTC.
    naive = moment.replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        first, second = (
            sign_get_caller_identity(FAKE, sts_url=DEFAULT_STS_URL, region="us-east-1")
            for _ in range(2)
        )
    assert first.amz_date == second.amz_date
    nonces = [dict(s.headers)[LOGIN_NONCE_HEADER] for s in (first, second)]
    assert nonces[0] != nonces[1]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", nonce) for nonce in nonces)
    signatures = set()
    for signed in (first, second):
        authorization = dict(signed.headers)["Authorization"]
        signed_headers = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
        assert "x-strongroom-login-nonce" in signed_headers
        vetted = vet_sts_request(
            decode_cloud_id(signed.cloud_id()),
            sts_url="https://sts.amazonaws.com",
            server_id=None,
            now=moment,
        )
        signatures.add(vetted.signature)
    assert len(signatures) == 2


def test_no_credentials_names_every_source_tried(invoke: Invoker, server: RunningServer) -> None:
    invoke(
        "configure",
        "--access-id",
        "p-abcdefabcdef",
        "--access-type",
        "aws_iam",
        "--server-url",
        server.url,
    )
    result = invoke("get-secret-value", "--name", "/dev/x")
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.stderr
    for source in CREDENTIAL_SOURCES:
        assert source in result.stderr
    assert "hint:" in result.stderr
    assert result.stdout == ""


@pytest.fixture(scope="module")
def iam_method(server: RunningServer, aws: AwsWorld) -> str:
    """An aws_iam auth method bound to app-role, whose role reads /iam/*; its access ID."""
    admin = server.admin
    created = admin.call(
        "POST",
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "iamAws",
            "bound_aws_account_id": [ACCOUNT_ID],
            "bound_role_name": ["app-role"],
            "sts_url": aws.url,
        },
    )
    admin.call("POST", "/v1/roles", json={"name": "iamReaders"})
    admin.call(
        "PUT", "/v1/roles/iamReaders/rules", json={"path": "/iam/*", "capabilities": ["read"]}
    )
    admin.call("POST", "/v1/roles/iamReaders/associations", json={"auth_method": "iamAws"})
    admin.call("POST", "/v1/secrets", json={"name": "/iam/token", "value": "from-imds"})
    return str(created["access_id"])


@pytest.mark.slow
def test_login_with_imdsv2_instance_credentials(
    server: RunningServer, aws: AwsWorld, iam_method: str, tmp_path: Path
) -> None:
    empty_credentials, empty_config = tmp_path / "credentials", tmp_path / "config"
    empty_credentials.touch()
    empty_config.touch()
    with InstanceMetadataService("app-role", aws.app.credentials) as imds:
        instance = Cli(
            tmp_path / "home",
            {
                "STRONGROOM_URL": server.url,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                "AWS_EC2_METADATA_DISABLED": "false",
                "AWS_SHARED_CREDENTIALS_FILE": str(empty_credentials),
                "AWS_CONFIG_FILE": str(empty_config),
            },
        )
        configure = instance.run(
            "configure",
            "--access-id",
            iam_method,
            "--access-type",
            "aws_iam",
            "--aws-sts-url",
            aws.url,
        )
        assert configure.returncode == 0, configure.stderr
        result = instance.run("get-secret-value", "--name", "/iam/token")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "from-imds\n"
        assert ("PUT", "/latest/api/token") in imds.requests
        assert ("GET", "/latest/meta-data/iam/security-credentials/app-role") in imds.requests


def test_login_with_environment_credentials_and_a_server_id(
    invoke: Invoker, server: RunningServer, aws: AwsWorld, iam_method: str
) -> None:
    """The signed X-Strongroom-Server-ID travels to STS intact (moto verifies the signature)."""
    invoke(
        "configure",
        "--access-id",
        iam_method,
        "--access-type",
        "aws_iam",
        "--server-url",
        server.url,
        "--aws-sts-url",
        aws.url,
        "--server-id",
        "cli-tests",
    )
    result = invoke("auth", "--json", env=aws.app.credentials.environ())
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "token" not in shown
    assert shown["roles"] == ["iamReaders"]
    assert shown["identity"]["role_name"] == "app-role"
    assert shown["identity"]["resource_id"] == "i-0abc1234567890def"


def test_a_wrong_role_gets_the_login_failure_text(
    invoke: Invoker, server: RunningServer, aws: AwsWorld, iam_method: str
) -> None:
    invoke(
        "configure",
        "--access-id",
        iam_method,
        "--access-type",
        "aws_iam",
        "--server-url",
        server.url,
        "--aws-sts-url",
        aws.url,
    )
    result = invoke("auth", env=aws.other.credentials.environ())
    assert result.exit_code == 1
    assert result.stderr == (
        "can't setup strongroom client: failed to get credentials.\n"
        "error: Desc: Failed to authenticate token based access.\n"
        "Status 401 Unauthorized, Error: AuthenticationFailed.\n"
        "Message: access authentication failed\n"
    )
