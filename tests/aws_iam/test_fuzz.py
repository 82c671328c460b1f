"""Fuzzing decode + vet: junk of any shape only ever ends in InvalidRequest or a denial."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strongroom.auth.aws_iam import (
    UnverifiedStsRequest,
    decode_cloud_id,
    decode_vault_fields,
    parse_get_caller_identity_response,
)
from strongroom.auth.aws_iam.sts_response import parse_sts_error
from strongroom.errors import AuthenticationDenied, InvalidRequestError, UpstreamUnavailableError
from tests.aws_iam.factories import signed_fields, signed_request, vet

EXPECTED = (InvalidRequestError, AuthenticationDenied)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(
    [
        "Authorization",
        "authorization",
        "Host",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "Content-Length",
        "Content-Type",
        "X-Strongroom-Server-ID",
        "X-Amz-Foo",
        "Bad Name",
        "",
    ]
) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attempt_cloud_id(cloud_id: str) -> None:
    with contextlib.suppress(*EXPECTED):
        request = decode_cloud_id(cloud_id)
        vet(request, sts_url="https://sts.amazonaws.com", server_id="strongroom-a")


@FUZZ
@given(st.text(max_size=300))
@example("")
@example("=")
@example(b64(b"null"))
def test_arbitrary_text(cloud_id: str) -> None:
    attempt_cloud_id(cloud_id)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_base64(data: bytes) -> None:
    attempt_cloud_id(b64(data))


@FUZZ
@given(JSON_VALUES)
def test_arbitrary_json(value: Any) -> None:
    attempt_cloud_id(b64(json.dumps(value).encode()))


@FUZZ
@given(
    method=st.sampled_from(["POST", "GET", "post"]) | st.text(max_size=8) | JSON_VALUES,
    url=st.sampled_from(["https://sts.amazonaws.com/", "http://169.254.169.254/"])
    | st.text(max_size=60),
    body=st.sampled_from([b"Action=GetCallerIdentity&Version=2011-06-15"]) | st.binary(max_size=60),
    headers=st.dictionaries(
        HEADER_NAMES,
        st.text(max_size=40) | st.lists(st.text(max_size=20), max_size=3) | JSON_VALUES,
        max_size=8,
    ),
    omit_body=st.booleans(),
)
def test_structured_cloud_id(
    method: Any, url: str, body: bytes, headers: dict[str, Any], omit_body: bool
) -> None:
    outer: dict[str, Any] = {
        "sts_request_method": method,
        "sts_request_url": b64(url.encode("utf-8", "surrogatepass")),
        "sts_request_headers": b64(json.dumps(headers).encode()),
    }
    if not omit_body:
        outer["sts_request_body"] = b64(body)
    attempt_cloud_id(b64(json.dumps(outer).encode()))


@FUZZ
@given(
    field=st.sampled_from(
        ["iam_http_request_method", "iam_request_url", "iam_request_body", "iam_request_headers"]
    ),
    junk=JSON_VALUES,
)
def test_vault_fields_with_one_field_replaced(field: str, junk: Any) -> None:
    fields: dict[str, Any] = {
        key: value for key, value in signed_fields().items() if key.startswith("iam_")
    }
    fields[field] = junk
    with contextlib.suppress(*EXPECTED):
        request = decode_vault_fields(
            fields["iam_http_request_method"],
            fields["iam_request_url"],
            fields["iam_request_body"],
            fields["iam_request_headers"],
        )
        vet(request)


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=10),
    name=HEADER_NAMES,
    value=st.text(max_size=80),
    mode=st.sampled_from(["replace", "add", "rename"]),
)
def test_signed_request_with_one_header_mutated(
    index: int, name: str, value: str, mode: str
) -> None:
    request = signed_request(server_id="strongroom-a")
    headers = list(request.headers)
    position = index % len(headers)
    if mode == "replace":
        headers[position] = (headers[position][0], value)
    elif mode == "rename":
        headers[position] = (name, headers[position][1])
    else:
        headers.append((name, value))
    mutated = UnverifiedStsRequest(request.method, request.url, request.body, tuple(headers))
    with contextlib.suppress(*EXPECTED):
        vet(mutated, server_id="strongroom-a")


@FUZZ
@given(body=st.binary(max_size=400), content_type=st.none() | st.text(max_size=30))
@example(body=b"<GetCallerIdentityResponse", content_type="text/xml")
def test_response_parser_only_raises_upstream(body: bytes, content_type: str | None) -> None:
    with contextlib.suppress(UpstreamUnavailableError):
        parse_get_caller_identity_response(body, content_type)
    parse_sts_error(body)  # never raises
