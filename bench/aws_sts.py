"""AWS STS for the login benches, without the test suite's rig (``tests/support``):

- :func:`sign_get_caller_identity`: a GetCallerIdentity request signed by botocore (SigV4,
  service ``sts``) at a chosen ``X-Amz-Date``, encoded as a ``cloud_id`` by the product's own
  client code (``strongroom.cli.aws_login``), so a bench logs in exactly as the CLI does.
- :class:`MotoSts`: moto's server as a process of its own, with one IAM role created and
  assumed while moto checks no signature, and SigV4 checks switched on after: from then on
  every request must carry a valid signature from a key moto knows, as in AWS.
- :class:`DelayedSts`: a stub STS that answers every request with one identity after a delay
  (``Connection: close``, a thread per connection) and counts what it received.

The test suite's ``tests/support`` does more (several accounts, scripted failures, hostile
XML); these are the few pieces the benches need.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

from processes import LOOPBACK, Processes, free_port, tail

from strongroom.cli.aws_login import (
    FORM_CONTENT_TYPE,
    GET_CALLER_IDENTITY_BODY,
    AwsCredentials,
    SignedStsRequest,
)

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_TRUST_ANYONE = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
    '"Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}'
)


def sign_get_caller_identity(
    credentials: AwsCredentials, *, url: str, amz_date: datetime, region: str = "us-east-1"
) -> dict[str, Any]:
    """GetCallerIdentity for ``url`` signed at ``amz_date`` (aware): ``{"cloud_id", "headers",
    "body", "url"}``, ``headers`` being the signed ones (Authorization included).

    Two requests signed for one URL at one ``amz_date`` are identical, and the server refuses
    the second as a replay: callers give each its own second.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    request: Any = AWSRequest(
        method="POST",
        url=url,
        data=GET_CALLER_IDENTITY_BODY,
        headers={"Content-Type": FORM_CONTENT_TYPE},
    )
    signer = SigV4Auth(
        ReadOnlyCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        "sts",
        region,
    )
    # botocore reads the signing time from this function and offers no parameter for it.
    moment = amz_date.astimezone(UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        signer.add_auth(request)
    headers = tuple((str(name), str(value)) for name, value in request.headers.items())
    signed = SignedStsRequest(url=url, body=GET_CALLER_IDENTITY_BODY, headers=headers)
    return {
        "cloud_id": signed.cloud_id(),
        "headers": dict(headers),
        "body": GET_CALLER_IDENTITY_BODY,
        "url": url,
    }


def identity_xml(arn: str, user_id: str, account: str) -> bytes:
    """A GetCallerIdentity answer as STS writes it."""
    return (
        f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>'
        f"<Arn>{arn}</Arn><UserId>{user_id}</UserId><Account>{account}</Account>"
        "</GetCallerIdentityResult><ResponseMetadata><RequestId>"
        "01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    ).encode()


@dataclass(frozen=True)
class Principal:
    """Credentials plus what GetCallerIdentity reports for them."""

    credentials: AwsCredentials
    arn: str
    user_id: str
    account: str


class MotoSts:
    """``moto_server`` on a loopback port, as a process of ``procs``."""

    def __init__(self, procs: Processes, log_path: Path, startup_timeout: float = 30.0) -> None:
        self._procs = procs
        self._log_path = log_path
        self.url = f"http://{LOOPBACK}:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        env = {**os.environ, "MOTO_PORT": port}
        env.pop("MOTO_ACCOUNT_ID", None)  # would pin every request to one account
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)  # checks start off; see assume_new_role
        script = Path(sys.executable).with_name("moto_server")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
        with log_path.open("wb") as log_handle:
            self.process = procs.spawn(
                [*command, "-H", LOOPBACK, "-p", port],
                env=env,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited early:\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1) as response:
                    response.read()
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server not up in {startup_timeout:.0f} s") from None
                time.sleep(0.05)

    def assume_new_role(self, role_name: str, session_name: str) -> Principal:
        """Create ``role_name`` (anyone may assume it) and assume it, then switch moto's
        signature checks on: the temporary credentials are the only key the benches sign with.
        """
        import boto3

        def client(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=self.url,
                region_name="us-east-1",
                aws_access_key_id="AKIABENCHSETUP000000",
                aws_secret_access_key="setup",  # checks are off until the end of this method
            )

        iam, sts = client("iam"), client("sts")
        try:
            role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=_TRUST_ANYONE)
            answer = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName=session_name)
        finally:
            iam.close()
            sts.close()
        # moto checks signatures once the number of unauthenticated actions allowed is 0.
        request = urllib.request.Request(
            self.url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form type would be eaten by moto
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        creds, assumed = answer["Credentials"], answer["AssumedRoleUser"]
        arn = str(assumed["Arn"])
        return Principal(
            credentials=AwsCredentials(
                creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            ),
            arn=arn,
            user_id=str(assumed["AssumedRoleId"]),
            account=arn.split(":")[4],
        )

    def stop(self) -> None:
        self._procs.stop(self.process)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    stub: DelayedSts


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(min(length, 64 * 1024))
        with stub.lock:
            stub.request_count += 1
        self.close_connection = True
        if stub.stopping.wait(stub.delay):
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(stub.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(stub.body)


class DelayedSts:
    """Answers every POST with ``body`` after ``delay`` seconds, on ``127.0.0.1:<free port>``.

    ``backlog``: the listen queue (socketserver's default is 5: a burst of connects beyond what
    the accept thread drains would overflow it, and the clients would retransmit after 1 s).
    """

    def __init__(self, body: bytes, delay: float, backlog: int = 1024) -> None:
        self.body = body
        self.delay = delay
        self.request_count = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _StubServer((LOOPBACK, 0), _StubHandler, bind_and_activate=False)
        self._server.request_queue_size = backlog  # read by listen() in server_activate()
        self._server.server_bind()
        self._server.server_activate()
        self._server.stub = self
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> DelayedSts:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
