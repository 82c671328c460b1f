"""Decoding cloud_id and the Vault iam_* fields: real generator output and malformed input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hvac
import pytest
from akeyless_cloud_id import CloudId

from strongroom.auth.aws_iam import (
    GET_CALLER_IDENTITY_BODY,
    MAX_CLOUD_ID_CHARS,
    UnverifiedStsRequest,
    decode_cloud_id,
    decode_vault_fields,
)
from strongroom.errors import InvalidRequestError
from tests.aws_iam.factories import FAKE_CREDENTIALS, NOW, signed_fields, vet
from tests.support.signing import encode_cloud_id

# Output of akeyless-cloud-id 0.3.2 over made-up credentials, kept with the tests: a test that
# skips when its input is missing proves nothing on the machines where it skips.
SAMPLE_PATH = Path(__file__).parent / "data" / "akeyless-cloud-id-sample.json"
URL = "https://sts.amazonaws.com/"


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def outer(**fields: Any) -> str:
    return b64(json.dumps(fields))


GOOD_FIELDS = {
    "sts_request_method": "POST",
    "sts_request_url": b64(URL),
    "sts_request_body": b64(GET_CALLER_IDENTITY_BODY),
    "sts_request_headers": b64(json.dumps({"X-Amz-Date": ["20261127T194350Z"]})),
}


# -- the reference sample ------------------------------------------------------------------


def test_the_reference_sample_holds_made_up_credentials_only() -> None:
    sample = json.loads(SAMPLE_PATH.read_text())
    request = decode_cloud_id(sample["cloud_id"])
    headers = dict(request.headers)
    assert "FAKE" in headers["Authorization"].split("Credential=")[1].split("/")[0]
    assert headers["X-Amz-Security-Token"].startswith("FAKE-")
    assert "secret" not in json.dumps(sample["layer2_decoded"]).lower()


def test_reference_sample_decodes_and_vets() -> None:
    sample = json.loads(SAMPLE_PATH.read_text())
    decoded = sample["layer2_decoded"]
    request = decode_cloud_id(sample["cloud_id"])
    assert request.method == "POST"
    assert request.url == decoded["sts_request_url"]
    assert request.body == decoded["sts_request_body"].encode()
    assert request.headers == tuple(
        (name, values[0]) for name, values in decoded["sts_request_headers"].items()
    )
    vetted = vet(request, now=datetime(2026, 11, 27, 19, 50, tzinfo=UTC))
    assert vetted.endpoint == "https://sts.amazonaws.com"
    assert vetted.access_key_id == sample["_generator_inputs_fake"]["aws_access_id"]
    assert vetted.region == "us-east-1"
    assert vetted.signature == decoded["sts_request_headers"]["Authorization"][0][-64:]
    # akeyless sends no Host header: it is rebuilt from the URL, first.
    assert vetted.headers[0] == ("Host", "sts.amazonaws.com")
    assert dict(vetted.headers)["Content-Length"] == "43"


# -- real generators -----------------------------------------------------------------------


def test_akeyless_cloud_id_output_decodes() -> None:
    creds = FAKE_CREDENTIALS
    assert creds.session_token is not None
    cloud_id = CloudId().generate(creds.access_key_id, creds.secret_access_key, creds.session_token)
    request = decode_cloud_id(cloud_id)
    assert request.method == "POST"
    assert request.url == URL
    assert request.body == GET_CALLER_IDENTITY_BODY
    names = [name for name, _ in request.headers]
    assert names == [
        "Authorization",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "X-Amz-Date",
        "X-Amz-Security-Token",
    ]
    authorization = dict(request.headers)["Authorization"]
    assert ",  SignedHeaders=" in authorization  # the generator's two-space quirk


def test_akeyless_cloud_id_from_environment_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # With any argument empty, the generator takes credentials from the boto3 chain (env here).
    for name, value in FAKE_CREDENTIALS.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    request = decode_cloud_id(CloudId().generate())
    assert dict(request.headers)["X-Amz-Security-Token"] == FAKE_CREDENTIALS.session_token
    assert FAKE_CREDENTIALS.access_key_id in dict(request.headers)["Authorization"]


def hvac_login_fields(header_value: str | None = None, region: str = "us-east-1") -> dict[str, Any]:
    """Run hvac's real iam_login and capture the JSON it would POST to Vault."""
    captured: dict[str, Any] = {}

    def fake_login(url: str, use_token: bool = True, **kwargs: Any) -> dict[str, Any]:
        captured.update(kwargs["json"])
        return {}

    client = hvac.Client(url="http://127.0.0.1:9")
    try:
        client.auth.aws._adapter.login = fake_login
        creds = FAKE_CREDENTIALS
        client.auth.aws.iam_login(
            creds.access_key_id,
            creds.secret_access_key,
            creds.session_token,
            header_value=header_value,
            region=region,
        )
    finally:
        client.adapter.close()
    return captured


def test_hvac_iam_login_fields_decode() -> None:
    fields = hvac_login_fields()
    request = decode_vault_fields(
        fields["iam_http_request_method"],
        fields["iam_request_url"],
        fields["iam_request_body"],
        fields["iam_request_headers"],
    )
    assert request.method == "POST"
    assert request.url == URL
    assert request.body == GET_CALLER_IDENTITY_BODY
    headers = dict(request.headers)
    assert headers["Host"] == "sts.amazonaws.com"  # hvac sends one
    assert (
        "content-length;content-type;host;x-amz-date;x-amz-security-token"
        in headers["Authorization"]
    )


def test_botocore_fields_decode_both_ways_to_the_same_request() -> None:
    fields = signed_fields(server_id="vault-a.example")
    from_cloud_id = decode_cloud_id(fields["cloud_id"])
    from_vault = decode_vault_fields(
        fields["iam_http_request_method"],
        fields["iam_request_url"],
        fields["iam_request_body"],
        fields["iam_request_headers"],
    )
    assert from_cloud_id == from_vault
    assert vet(from_cloud_id, server_id="vault-a.example").amz_date == NOW


# -- cloud_id format -----------------------------------------------------------------------


def test_missing_body_defaults_to_get_caller_identity() -> None:
    fields = {k: v for k, v in GOOD_FIELDS.items() if k != "sts_request_body"}
    assert decode_cloud_id(outer(**fields)).body == GET_CALLER_IDENTITY_BODY


def test_header_lists_keep_every_value_in_order() -> None:
    headers = {"A": ["1", "2"], "b": "3"}
    request = decode_cloud_id(encode_cloud_id(url=URL, headers=headers))
    assert request.headers == (("A", "1"), ("A", "2"), ("b", "3"))


def test_compact_json_from_the_go_generator() -> None:
    compact = json.dumps(GOOD_FIELDS, separators=(",", ":"))
    assert decode_cloud_id(b64(compact)) == UnverifiedStsRequest(
        "POST", URL, GET_CALLER_IDENTITY_BODY, (("X-Amz-Date", "20261127T194350Z"),)
    )


def _replace(**changes: Any) -> str:
    fields = dict(GOOD_FIELDS)
    for key, value in changes.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return outer(**fields)


@pytest.mark.parametrize(
    ("cloud_id", "message"),
    [
        ("", "not valid JSON"),
        ("not base64!", "not valid base64"),
        (b64("{}")[:-1], "not valid base64"),  # padding removed
        (b64(json.dumps(GOOD_FIELDS)).replace("=", ""), "not valid base64"),
        (base64.urlsafe_b64encode(b"\xfb\xff" * 3).decode(), "not valid base64"),
        (" " + outer(**GOOD_FIELDS), "not valid base64"),
        ("é" + outer(**GOOD_FIELDS), "not valid base64"),
        (b64("not json"), "not valid JSON"),
        (b64("[1, 2]"), "must be a JSON object"),
        (b64("\xff\xfe"), "not valid JSON"),
        (b64("[" * 5000 + "]" * 5000), "not valid JSON"),  # RecursionError inside json
        (b64('{"sts_request_method": "POST", "sts_request_method": "GET"}'), "repeats the key"),
        (_replace(sts_request_method=None), "lacks sts_request_method"),
        (_replace(sts_request_url=None), "lacks sts_request_url"),
        (_replace(sts_request_headers=None), "lacks sts_request_headers"),
        (_replace(extra="x"), "unexpected keys"),
        (_replace(sts_request_method=1), "must be a string"),
        (_replace(sts_request_url="%%%"), "sts_request_url is not valid base64"),
        (_replace(sts_request_url=b64(b"\xff")), "not UTF-8"),
        (_replace(sts_request_body=7), "must be a base64 string"),
        (_replace(sts_request_headers=b64("[]")), "must be a JSON object"),
        (_replace(sts_request_headers=b64('{"A": []}')), "non-empty list"),
        (_replace(sts_request_headers=b64('{"A": 1}')), "must be a string or"),
        (_replace(sts_request_headers=b64('{"X-Amz-Security-Token": [null]}')), "must be a string"),
        (_replace(sts_request_headers=b64('{"A": ["1"], "A": ["2"]}')), "repeats the key"),
        (
            _replace(sts_request_headers=b64(json.dumps({f"H{i}": "v" for i in range(65)}))),
            "more than 64 headers",
        ),
        (
            _replace(sts_request_headers=b64(json.dumps({"H": ["v"] * 65}))),
            "more than 64 headers",
        ),
        ("A" * (MAX_CLOUD_ID_CHARS + 1), "longer than"),
    ],
)
def test_malformed_cloud_id(cloud_id: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decode_cloud_id(cloud_id)
    assert message in caught.value.message


def test_cloud_id_must_be_a_string() -> None:
    with pytest.raises(InvalidRequestError):
        decode_cloud_id(b"abc")  # type: ignore[arg-type]


def test_size_cap_is_checked_before_decoding() -> None:
    # Valid base64 of valid JSON, but one character over the cap: refused without decoding.
    padded = outer(**GOOD_FIELDS, padding="x" * MAX_CLOUD_ID_CHARS)
    with pytest.raises(InvalidRequestError, match="longer than"):
        decode_cloud_id(padded)


# -- Vault fields --------------------------------------------------------------------------

HEADERS_JSON = json.dumps({"X-Amz-Date": ["20261127T194350Z"], "Host": "sts.amazonaws.com"})
EXPECTED = UnverifiedStsRequest(
    "POST",
    URL,
    GET_CALLER_IDENTITY_BODY,
    (("X-Amz-Date", "20261127T194350Z"), ("Host", "sts.amazonaws.com")),
)


@pytest.mark.parametrize(
    "headers",
    [
        b64(HEADERS_JSON),  # hvac, Vault CLI
        HEADERS_JSON,  # plain JSON string
        "  " + HEADERS_JSON,
        json.loads(HEADERS_JSON),  # a JSON object in the login body
    ],
)
def test_vault_header_forms(headers: object) -> None:
    assert decode_vault_fields("POST", b64(URL), b64(GET_CALLER_IDENTITY_BODY), headers) == EXPECTED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((None, b64(URL), b64("b"), HEADERS_JSON), "iam_http_request_method is required"),
        (("POST", None, b64("b"), HEADERS_JSON), "iam_request_url is required"),
        (("POST", b64(URL), None, HEADERS_JSON), "iam_request_body is required"),
        (("POST", b64(URL), b64("b"), None), "iam_request_headers is required"),
        ((1, b64(URL), b64("b"), HEADERS_JSON), "must be a string"),
        (("POST", URL, b64("b"), HEADERS_JSON), "iam_request_url is not valid base64"),
        (("POST", b64(URL), "Action=GetCallerIdentity", HEADERS_JSON), "not valid base64"),
        (("POST", b64(URL), b64("b"), ["Host:sts.amazonaws.com"]), "must be base64"),
        (("POST", b64(URL), b64("b"), "{not json"), "not valid JSON"),
        (("POST", b64(URL), b64("b"), b64("[]")), "must be a JSON object"),
        (("POST", b64(URL), b64("b"), {"A": {"b": 1}}), "must be a string or"),
        (("POST", b64(URL), b64("b"), {"A": [1]}), "must be a string"),
        (("POST", b64(URL), b64("b"), {"A": "x" * 17000}), "longer than"),
        (("POST", "A" * 17000, b64("b"), HEADERS_JSON), "longer than"),
    ],
)
def test_malformed_vault_fields(fields: tuple[object, ...], message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decode_vault_fields(*fields)
    assert message in caught.value.message
