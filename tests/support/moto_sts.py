"""A moto_server subprocess acting as AWS STS and IAM, with SigV4 signature checks switched on.

moto checks no signature by default (``INITIAL_NO_AUTH_ACTION_COUNT`` is infinite). This class
starts it with checks off, creates an admin IAM user whose key signs all later set-up calls, and
then ``enable_signature_checks()`` posts ``0`` to ``/moto-api/reset-auth``: from then on every
request must carry a valid signature from a known key (a tampered signature gives 403
``SignatureDoesNotMatch``, an unknown key 403 ``InvalidClientTokenId``). GetCallerIdentity is
always allowed by policy; everything else is allowed for the admin user.

moto does NOT check X-Amz-Date freshness or that the credential-scope region is real: tests of
those use :mod:`tests.support.stub_sts` or the pure vetting functions.

Other accounts: moto keeps one IAM backend per account, chosen by the ``x-moto-account-id``
request header. ``create_role(..., account_id=OTHER_ACCOUNT_ID)`` creates a role there (with
signature checks briefly suspended, since the admin key belongs to the default account), and
``assume_role`` on its ARN gives credentials whose GetCallerIdentity reports that account.

Typical use::

    with MotoServer() as moto:
        role_arn = moto.create_role("app-role")
        moto.enable_signature_checks()
        principal = moto.assume_role(role_arn, "i-0abc1234567890def")
        principal.credentials, principal.arn, principal.user_id, principal.account
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.credentials import Credentials

DEFAULT_ACCOUNT_ID = "123456789012"
OTHER_ACCOUNT_ID = "999999999999"
_ALLOW_ALL_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
_TRUST_ANYONE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)


@dataclass(frozen=True)
class AwsCredentials:
    """An AWS key pair, optionally temporary; the secret parts stay out of repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def botocore(self) -> Credentials:
        """As botocore credentials, for SigV4Auth."""
        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)

    def environ(self) -> dict[str, str]:
        """As the AWS_* environment variables the SDK credential chain reads."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.session_token is not None:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass(frozen=True)
class MotoPrincipal:
    """Credentials plus what GetCallerIdentity must report for them."""

    credentials: AwsCredentials
    arn: str
    user_id: str
    account: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (good enough for loopback test servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _moto_server_command() -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "moto.server"]


class MotoServer:
    """A moto_server process on a loopback port; start() / stop() or use it as a context."""

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 30.0) -> None:
        self.host = host
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
        self._admin: AwsCredentials | None = None
        self.signature_checks = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MotoServer:
        """Start the process, wait until it answers, and create the admin user."""
        env = {**os.environ, "MOTO_PORT": str(self.port)}
        env.pop("MOTO_ACCOUNT_ID", None)  # would pin every request to one account
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        self._process = subprocess.Popen(
            [*_moto_server_command(), "-H", self.host, "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait_until_up()
        self._admin = self._create_admin()
        return self

    def stop(self) -> None:
        """Stop the process and remove its log."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, limit: int = 4000) -> str:
        """The end of moto's output, for failure messages."""
        try:
            return Path(self._log.name).read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1) as response:
                    response.read()
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"moto_server did not start within {self._startup_timeout} s")

    # -- signature checks ------------------------------------------------------------------

    def _reset_auth(self, count: str) -> None:
        request = urllib.request.Request(
            self.url + "/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            # Not a form content type, or moto's framework eats the body.
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def enable_signature_checks(self) -> None:
        """From now on moto verifies every request's SigV4 signature and key."""
        self._reset_auth("0")
        self.signature_checks = True

    @contextlib.contextmanager
    def signature_checks_suspended(self) -> Iterator[None]:
        """Turn checks off for set-up that no key can sign (another account's resources)."""
        was_on = self.signature_checks
        self._reset_auth("inf")
        try:
            yield
        finally:
            if was_on:
                self._reset_auth("0")

    # -- set-up helpers --------------------------------------------------------------------

    def client(
        self,
        service: str,
        *,
        credentials: AwsCredentials | None = None,
        account_id: str | None = None,
        region: str = "us-east-1",
    ) -> Any:
        """A boto3 client for moto, signed with the admin key unless told otherwise.

        ``account_id`` adds moto's ``x-moto-account-id`` header so the call acts in that
        account. Close the client when done.
        """
        creds = credentials or self._admin or AwsCredentials("AKIAMOTOSETUP0000000", "setup")
        client = boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
        )
        if account_id is not None:

            def add_account_header(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account_id

            client.meta.events.register("before-sign.*.*", add_account_header)
        return client

    def _create_admin(self) -> AwsCredentials:
        iam = self.client("iam")
        try:
            iam.create_user(UserName="strongroom-test-admin")
            iam.put_user_policy(
                UserName="strongroom-test-admin",
                PolicyName="allow-all",
                PolicyDocument=_ALLOW_ALL_POLICY,
            )
            key = iam.create_access_key(UserName="strongroom-test-admin")["AccessKey"]
        finally:
            iam.close()
        return AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"])

    def create_role(
        self, name: str, *, path: str = "/", account_id: str = DEFAULT_ACCOUNT_ID
    ) -> str:
        """Create an IAM role anyone may assume; return its ARN."""
        suspended = (
            self.signature_checks_suspended()
            if account_id != DEFAULT_ACCOUNT_ID
            else contextlib.nullcontext()
        )
        with suspended:
            iam = self.client("iam", account_id=account_id)
            try:
                role = iam.create_role(
                    RoleName=name, Path=path, AssumeRolePolicyDocument=_TRUST_ANYONE_POLICY
                )["Role"]
            finally:
                iam.close()
        arn: str = role["Arn"]
        return arn

    def create_user(self, name: str, *, path: str = "/") -> MotoPrincipal:
        """Create an IAM user in the default account with an access key."""
        iam = self.client("iam")
        try:
            user = iam.create_user(UserName=name, Path=path)["User"]
            key = iam.create_access_key(UserName=name)["AccessKey"]
        finally:
            iam.close()
        return MotoPrincipal(
            credentials=AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"]),
            arn=user["Arn"],
            user_id=user["UserId"],
            account=DEFAULT_ACCOUNT_ID,
        )

    def assume_role(self, role_arn: str, session_name: str) -> MotoPrincipal:
        """AssumeRole (signed by the admin) and return the temporary credentials."""
        sts = self.client("sts")
        try:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)
        finally:
            sts.close()
        creds = answer["Credentials"]
        assumed = answer["AssumedRoleUser"]
        arn: str = assumed["Arn"]
        return MotoPrincipal(
            credentials=AwsCredentials(
                creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            ),
            arn=arn,
            user_id=assumed["AssumedRoleId"],
            account=arn.split(":")[4],
        )
