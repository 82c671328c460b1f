"""parse_get_caller_identity_response: strict shape, hostile XML refused without expansion."""

from __future__ import annotations

import time

import pytest

from strongroom.auth.aws_iam import CallerIdentity, parse_get_caller_identity_response
from strongroom.auth.aws_iam.sts_response import StsError, parse_sts_error
from strongroom.errors import UpstreamUnavailableError
from tests.support.stub_sts import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    NOT_XML,
    STS_NAMESPACE,
    error_xml,
    identity_xml,
)

ARN = "arn:aws:sts::123456789012:assumed-role/app-role/i-0abc1234567890def"
USER_ID = "AROAEXAMPLEROLEID0001:i-0abc1234567890def"


def response(
    result: str, *, root: str = "GetCallerIdentityResponse", ns: str = STS_NAMESPACE
) -> bytes:
    return f'<{root} xmlns="{ns}">{result}</{root}>'.encode()


def result(fields: str) -> str:
    return f"<GetCallerIdentityResult>{fields}</GetCallerIdentityResult>"


GOOD_FIELDS = f"<Arn>{ARN}</Arn><UserId>{USER_ID}</UserId><Account>123456789012</Account>"


@pytest.mark.parametrize("content_type", ["text/xml", "text/xml; charset=utf-8", "application/xml"])
def test_parses_sts_answer(content_type: str) -> None:
    assert parse_get_caller_identity_response(identity_xml(), content_type) == CallerIdentity(
        arn=ARN, user_id=USER_ID, account="123456789012"
    )


def test_parses_moto_answer_with_prolog_and_any_field_order() -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + response(
        result(f"<UserId>{USER_ID}</UserId><Account>123456789012</Account><Arn>{ARN}</Arn>")
        + "<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
    )
    assert parse_get_caller_identity_response(body, "text/xml").arn == ARN


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        pytest.param(identity_xml(), None, "not XML", id="no content type"),
        pytest.param(identity_xml(), "application/json", "not XML", id="json content type"),
        pytest.param(identity_xml(), "text/html; charset=utf-8", "not XML", id="html"),
        pytest.param(NOT_XML, "text/xml", "not well-formed", id="json body"),
        pytest.param(b"", "text/xml", "not well-formed", id="empty"),
        pytest.param(b"<GetCallerIdentityResponse", "text/xml", "not well-formed", id="truncated"),
        pytest.param(BILLION_LAUGHS, "text/xml", "hostile XML refused", id="billion laughs"),
        pytest.param(EXTERNAL_ENTITY, "text/xml", "hostile XML refused", id="external entity"),
        pytest.param(
            b'<!DOCTYPE r SYSTEM "http://169.254.169.254/">' + identity_xml(),
            "text/xml",
            "hostile XML refused",
            id="external dtd",
        ),
        pytest.param(
            response(result(GOOD_FIELDS), ns="https://evil.example/"),
            "text/xml",
            "root element",
            id="wrong namespace",
        ),
        pytest.param(
            f"<GetCallerIdentityResponse>{result(GOOD_FIELDS)}</GetCallerIdentityResponse>".encode(),
            "text/xml",
            "root element",
            id="no namespace",
        ),
        pytest.param(
            response(result(GOOD_FIELDS), root="AssumeRoleResponse"),
            "text/xml",
            "root element",
            id="other action",
        ),
        pytest.param(
            f'<Wrapper xmlns="{STS_NAMESPACE}">'.encode()
            + response(result(GOOD_FIELDS))
            + b"</Wrapper>",
            "text/xml",
            "root element",
            id="nested forged response",
        ),
        pytest.param(
            response(""), "text/xml", "exactly one GetCallerIdentityResult", id="no result"
        ),
        pytest.param(
            response(result(GOOD_FIELDS) * 2),
            "text/xml",
            "exactly one GetCallerIdentityResult",
            id="two results",
        ),
        pytest.param(
            response(result(GOOD_FIELDS + f"<Arn>{ARN}</Arn>")),
            "text/xml",
            "exactly one Arn",
            id="two arns",
        ),
        pytest.param(
            response(result(f"<UserId>{USER_ID}</UserId><Account>123456789012</Account>")),
            "text/xml",
            "exactly one Arn",
            id="no arn",
        ),
        pytest.param(
            response(result(GOOD_FIELDS.replace("123456789012</Account>", "</Account>"))),
            "text/xml",
            "Account is empty",
            id="empty account",
        ),
        pytest.param(
            response(
                result(GOOD_FIELDS.replace("123456789012</Account>", "12345678901a</Account>"))
            ),
            "text/xml",
            "12 digits",
            id="bad account",
        ),
        pytest.param(
            response(result(GOOD_FIELDS.replace(f"<Arn>{ARN}", f"<Arn> {ARN}"))),
            "text/xml",
            "not plain text",
            id="whitespace in arn",
        ),
        pytest.param(
            response(result(GOOD_FIELDS.replace(f"<Arn>{ARN}", "<Arn>" + "a" * 2049))),
            "text/xml",
            "too long",
            id="long arn",
        ),
        pytest.param(
            response(result(GOOD_FIELDS.replace(f"<Arn>{ARN}", f"<Arn><b>{ARN}</b>"))),
            "text/xml",
            "child elements",
            id="nested element",
        ),
        pytest.param(
            identity_xml() + b" " * (64 * 1024),
            "text/xml",
            "over 65536 bytes",
            id="too big",
        ),
    ],
)
def test_refused_as_upstream_failure(body: bytes, content_type: str | None, fragment: str) -> None:
    with pytest.raises(UpstreamUnavailableError) as caught:
        parse_get_caller_identity_response(body, content_type)
    assert fragment in caught.value.reason


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(UpstreamUnavailableError):
        parse_get_caller_identity_response(BILLION_LAUGHS, "text/xml")
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            error_xml("SignatureDoesNotMatch", "bad sig"),
            StsError("SignatureDoesNotMatch", "bad sig"),
        ),
        (
            error_xml("InvalidClientTokenId", moto_style=True),
            StsError("InvalidClientTokenId", "error"),
        ),
        (b"<html>nope</html>", StsError(None, None)),
        (b"not xml", StsError(None, None)),
        (BILLION_LAUGHS, StsError(None, None)),
        (b"<E><Code>has space</Code></E>", StsError(None, None)),
        (b"x" * (64 * 1024 + 1), StsError(None, None)),
    ],
)
def test_parse_sts_error(body: bytes, expected: StsError) -> None:
    assert parse_sts_error(body) == expected
