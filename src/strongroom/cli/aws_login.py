"""The client half of an AWS IAM login (SPEC section 3): sign GetCallerIdentity, encode it.

The CLI never sends AWS credentials anywhere. It signs the fixed request

    POST <sts_url>/   Content-Type: application/x-www-form-urlencoded; charset=utf-8
    Action=GetCallerIdentity&Version=2011-06-15

with SigV4 (service ``sts``) and hands the signed request to the Strongroom server as
``cloud_id``, which replays it to STS to learn who signed it. The encoding is exactly what the
PyPI package ``akeyless-cloud-id`` produces::

    cloud_id = b64(json({"sts_request_method": "POST",
                         "sts_request_url":     b64(url),
                         "sts_request_body":    b64(body),
                         "sts_request_headers": b64(json({"Header": ["value"], …}))}))

No Host header travels in the map; the signature covers the URL's host. Every login adds a
fresh random ``X-Strongroom-Login-Nonce`` *before* signing: SigV4 dates have one-second
resolution, so without it two processes of one role (one instance profile) logging in within
the same second would sign byte-identical requests, and the server, which accepts a signed
request only once, would refuse all but one. A profile with a ``server_id`` adds
``X-Strongroom-Server-ID`` before signing too, so it is listed in SignedHeaders and the login
cannot be replayed against another server.

Credentials come from botocore's default chain: environment variables, shared credentials and
config files (including ``AWS_PROFILE``, SSO, assume-role profiles), container credentials
(ECS/EKS), then EC2 instance metadata with IMDSv2 (``AWS_EC2_METADATA_SERVICE_ENDPOINT`` is
honoured by botocore itself).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from strongroom.cli.errors import AwsCredentialsError

DEFAULT_STS_URL = "https://sts.amazonaws.com/"
GLOBAL_STS_REGION = "us-east-1"
GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SERVER_ID_HEADER = "X-Strongroom-Server-ID"
LOGIN_NONCE_HEADER = "X-Strongroom-Login-Nonce"
LOGIN_NONCE_BYTES = 24  # 32 URL-safe characters; the server takes 16 to 64
CREDENTIAL_SOURCES = (
    "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)",
    "shared credentials and config files (~/.aws/credentials, ~/.aws/config, AWS_PROFILE)",
    "container credentials (ECS/EKS: AWS_CONTAINER_CREDENTIALS_*)",
    "EC2 instance metadata (IMDSv2)",
)

_REGIONAL_HOST = re.compile(
    r"sts(?:-fips)?\.(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2})"
    r"\.amazonaws\.com(?:\.cn)?"
)


@dataclass(frozen=True)
class AwsCredentials:
    """A frozen AWS key pair; the secret parts stay out of repr."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SignedStsRequest:
    """A signed GetCallerIdentity request, ready to encode. Headers hold the signature."""

    url: str
    body: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def amz_date(self) -> str:
        return dict(self.headers).get("X-Amz-Date", "")

    def cloud_id(self) -> str:
        """The ``cloud_id`` login field (akeyless-cloud-id format)."""
        header_map: dict[str, list[str]] = {}
        for name, value in self.headers:
            header_map.setdefault(name, []).append(value)
        outer = {
            "sts_request_method": "POST",
            "sts_request_url": _b64(self.url),
            "sts_request_body": _b64(self.body),
            "sts_request_headers": _b64(json.dumps(header_map)),
        }
        return _b64(json.dumps(outer))

    def vault_fields(self) -> dict[str, str]:
        """The same request as Vault's ``iam_*`` login fields (``POST /v1/auth/aws/login``)."""
        header_map: dict[str, list[str]] = {}
        for name, value in self.headers:
            header_map.setdefault(name, []).append(value)
        return {
            "iam_http_request_method": "POST",
            "iam_request_url": _b64(self.url),
            "iam_request_body": _b64(self.body),
            "iam_request_headers": _b64(json.dumps(header_map)),
        }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def normalize_sts_url(url: str | None) -> str:
    """The URL to sign: the profile's STS URL (default the global endpoint) with path ``/``."""
    value = (url or DEFAULT_STS_URL).strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise AwsCredentialsError(
            f"aws_sts_url {value!r} is not an http(s) URL without a query",
            hint="set it with strongroom configure … --aws-sts-url https://sts.<region>.amazonaws.com",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


def sts_region(url: str, explicit: str | None = None) -> str:
    """The SigV4 region for ``url``: ``explicit`` if set; ``sts.<region>.amazonaws.com[.cn]``
    gives ``<region>``; the global endpoint and any other host (a test STS) give us-east-1."""
    if explicit:
        return explicit
    host = (urlsplit(url).hostname or "").lower()
    match = _REGIONAL_HOST.fullmatch(host)
    return match["region"] if match else GLOBAL_STS_REGION


def load_aws_credentials() -> AwsCredentials:
    """Resolve credentials through botocore's default chain; raise AwsCredentialsError."""
    import botocore.exceptions
    import botocore.session

    try:
        resolved = botocore.session.get_session().get_credentials()
        frozen = resolved.get_frozen_credentials() if resolved is not None else None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsCredentialsError(
            f"could not load AWS credentials: {exc}",
            hint="fix the AWS configuration named in the message, or unset AWS_PROFILE",
        ) from exc
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise AwsCredentialsError(
            "no AWS credentials found; tried " + "; ".join(CREDENTIAL_SOURCES),
            hint=(
                "run this on an EC2 instance, container or function with an IAM role, or export "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) for the role"
            ),
        )
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def sign_get_caller_identity(
    credentials: AwsCredentials,
    *,
    sts_url: str,
    region: str,
    server_id: str | None = None,
    user_agent: str = "strongroom-cli",
    nonce: str | None = None,
) -> SignedStsRequest:
    """Sign GetCallerIdentity for ``sts_url`` (already normalised) with SigV4, service sts.

    ``nonce``: the login nonce to sign (default: a fresh random one, as every login needs).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    body = GET_CALLER_IDENTITY_BODY
    headers: dict[str, str] = {
        "Content-Type": FORM_CONTENT_TYPE,
        "Content-Length": str(len(body.encode())),
        # Signed, so two same-second logins never sign the same request (module docstring).
        LOGIN_NONCE_HEADER: nonce or secrets.token_urlsafe(LOGIN_NONCE_BYTES),
    }
    if server_id:
        # Before signing: the header must be listed in SignedHeaders (SPEC section 3, check 5).
        headers[SERVER_ID_HEADER] = server_id
    request: Any = AWSRequest(method="POST", url=sts_url, data=body, headers=headers)
    signer = SigV4Auth(
        ReadOnlyCredentials(credentials.access_key, credentials.secret_key, credentials.token),
        "sts",
        region,
    )
    signer.add_auth(request)
    # User-Agent is never signed (botocore leaves it out), so it is added afterwards.
    signed = [(str(name), str(value)) for name, value in request.headers.items()]
    signed.append(("User-Agent", user_agent))
    return SignedStsRequest(url=sts_url, body=body, headers=tuple(signed))


def aws_iam_login_body(access_id: str, signed: SignedStsRequest) -> dict[str, str]:
    """The JSON body of ``POST /v1/auth/login`` for an aws_iam profile."""
    return {"access_id": access_id, "access_type": "aws_iam", "cloud_id": signed.cloud_id()}
