"""A local EC2 instance metadata service (IMDSv2 only) serving one role's credentials.

    PUT /latest/api/token                                   -> a session token
        (needs the X-aws-ec2-metadata-token-ttl-seconds header)
    GET /latest/meta-data/iam/security-credentials/         -> the role name
    GET /latest/meta-data/iam/security-credentials/<role>   -> {"Code": "Success", "AccessKeyId",
                                                               "SecretAccessKey", "Token",
                                                               "Expiration", …}

Every GET without a valid ``X-aws-ec2-metadata-token`` gets 401, as on an instance that
requires IMDSv2. Point botocore at it with ``AWS_EC2_METADATA_SERVICE_ENDPOINT=<url>``.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.support.moto_sts import AwsCredentials

CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    imds: InstanceMetadataService


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        imds = self.server.imds
        if self.path != "/latest/api/token" or not self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._reply(400, "bad token request")
            return
        imds.record(("PUT", self.path))
        self._reply(200, imds.session_token)

    def do_GET(self) -> None:
        imds = self.server.imds
        imds.record(("GET", self.path))
        if self.headers.get("X-aws-ec2-metadata-token") != imds.session_token:
            self._reply(401, "")
            return
        if self.path == CREDENTIALS_PATH:
            self._reply(200, imds.role_name)
        elif self.path == CREDENTIALS_PATH + imds.role_name:
            self._reply(200, json.dumps(imds.credentials_document()), "application/json")
        else:
            self._reply(404, "")


class InstanceMetadataService:
    """The service on ``127.0.0.1:<free port>``; use it as a context manager."""

    def __init__(self, role_name: str, credentials: AwsCredentials) -> None:
        self.role_name = role_name
        self.credentials = credentials
        self.session_token = secrets.token_urlsafe(32)
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.imds = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def record(self, request: tuple[str, str]) -> None:
        with self._lock:
            self.requests.append(request)

    def credentials_document(self) -> dict[str, str]:
        now = datetime.now(UTC)
        return {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.credentials.access_key_id,
            "SecretAccessKey": self.credentials.secret_access_key,
            "Token": self.credentials.session_token or "",
            "Expiration": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def __enter__(self) -> InstanceMetadataService:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
