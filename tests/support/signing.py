"""Client side of an AWS IAM login: sign GetCallerIdentity with botocore, encode it both ways.

:func:`sign_get_caller_identity` does what a Strongroom client does (no network): it signs the
fixed GetCallerIdentity request with botocore's ``SigV4Auth`` and returns the login fields in
both encodings. :func:`encode_cloud_id` and :func:`encode_vault_fields` encode any request,
valid or not, so tests can craft attacks (another host, another action, extra headers…).

botocore does not put a Host header in the request (it signs the URL's host), like
akeyless-cloud-id; pass ``extra_headers={"Host": …}`` to send one like hvac does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from tests.support.moto_sts import AwsCredentials

GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SERVER_ID_HEADER = "X-Strongroom-Server-ID"

HeaderInput = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _header_map(headers: HeaderInput) -> dict[str, list[str]]:
    """Go ``http.Header`` style ``{"Name": ["v", …]}``; pairs with one name are grouped."""
    grouped: dict[str, list[str]] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(name, []).extend(values)
    return grouped


def encode_cloud_id(
    *,
    method: str = "POST",
    url: str,
    body: bytes | str | None = GET_CALLER_IDENTITY_BODY,
    headers: HeaderInput,
    extra_fields: Mapping[str, Any] | None = None,
) -> str:
    """An Akeyless ``cloud_id``; ``body=None`` leaves ``sts_request_body`` out (old generator)."""
    outer: dict[str, Any] = {
        "sts_request_method": method,
        "sts_request_url": _b64(url),
        "sts_request_headers": _b64(json.dumps(_header_map(headers))),
    }
    if body is not None:
        outer["sts_request_body"] = _b64(body)
    outer.update(extra_fields or {})
    return _b64(json.dumps(outer))


def encode_vault_fields(
    *,
    method: str = "POST",
    url: str,
    body: bytes | str = GET_CALLER_IDENTITY_BODY,
    headers: HeaderInput,
) -> dict[str, str]:
    """The four hvac/Vault ``iam_*`` login fields, headers as base64 JSON (hvac's form)."""
    return {
        "iam_http_request_method": method,
        "iam_request_url": _b64(url),
        "iam_request_body": _b64(body),
        "iam_request_headers": _b64(json.dumps(_header_map(headers))),
    }


def sign_get_caller_identity(
    credentials: AwsCredentials,
    *,
    url: str = "https://sts.amazonaws.com/",
    region: str = "us-east-1",
    server_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    amz_date: datetime | None = None,
    body: str = GET_CALLER_IDENTITY_BODY,
) -> dict[str, Any]:
    """Sign GetCallerIdentity for ``url`` with botocore SigV4 and return the login fields.

    Returns ``{"cloud_id", "iam_http_request_method", "iam_request_url", "iam_request_body",
    "iam_request_headers", "headers", "url", "body"}``: ``headers`` is the signed header dict
    (Authorization included), handy for tampering. ``server_id`` adds a signed
    ``X-Strongroom-Server-ID``; ``extra_headers`` are added before signing (so they are
    signed, except those botocore never signs, such as User-Agent). ``amz_date`` (aware)
    fixes the signing time.
    """
    headers = {"Content-Type": FORM_CONTENT_TYPE}
    if server_id is not None:
        headers[SERVER_ID_HEADER] = server_id
    headers.update(extra_headers or {})
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    signer = SigV4Auth(credentials.botocore(), "sts", region)
    if amz_date is None:
        signer.add_auth(request)
    else:
        moment = amz_date.astimezone(UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
            signer.add_auth(request)
    signed = dict(request.headers.items())
    return {
        "cloud_id": encode_cloud_id(url=url, body=body, headers=signed),
        **encode_vault_fields(url=url, body=body, headers=signed),
        "headers": signed,
        "url": url,
        "body": body,
    }
