"""validate_sts_url: only AWS STS endpoints or configured extras, in their normal form;
parse_connect_to: STRONGROOM_STS_CONNECT_TO, checked at start-up."""

from __future__ import annotations

import pytest

from strongroom.auth.aws_iam import (
    connection_origin,
    normalize_endpoint,
    parse_connect_to,
    parse_extra_endpoints,
    validate_sts_url,
)
from strongroom.auth.aws_iam.endpoint import aws_sts_region
from strongroom.errors import ConfigurationError, InvalidRequestError

EXTRAS = ("http://127.0.0.1:5000", "https://sts.internal.example:8443/")


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://sts.amazonaws.com", "https://sts.amazonaws.com"),
        ("https://sts.amazonaws.com/", "https://sts.amazonaws.com"),
        ("HTTPS://STS.AMAZONAWS.COM/", "https://sts.amazonaws.com"),
        ("https://sts.amazonaws.com:443", "https://sts.amazonaws.com"),
        ("https://sts.us-east-1.amazonaws.com", "https://sts.us-east-1.amazonaws.com"),
        ("https://sts.eu-central-2.amazonaws.com/", "https://sts.eu-central-2.amazonaws.com"),
        ("https://sts.ap-southeast-5.amazonaws.com", "https://sts.ap-southeast-5.amazonaws.com"),
        ("https://sts.us-gov-west-1.amazonaws.com", "https://sts.us-gov-west-1.amazonaws.com"),
        ("https://sts.cn-north-1.amazonaws.com.cn", "https://sts.cn-north-1.amazonaws.com.cn"),
        (
            "https://sts.cn-northwest-1.amazonaws.com.cn",
            "https://sts.cn-northwest-1.amazonaws.com.cn",
        ),
        # Extra endpoints, compared in normal form; http is fine for them.
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("https://STS.internal.example:8443", "https://sts.internal.example:8443"),
    ],
)
def test_allowed(url: str, normal: str) -> None:
    assert validate_sts_url(url, EXTRAS) == normal


@pytest.mark.parametrize(
    "url",
    [
        "http://sts.amazonaws.com",  # plain http to AWS
        "https://sts.amazonaws.com:8443",
        "https://sts.amazonaws.com.evil.example",
        "https://evil.example/sts.amazonaws.com",
        "https://sts.amazonaws.com.",  # trailing dot: another spelling, refused
        "https://xsts.amazonaws.com",
        "https://sts..amazonaws.com",
        "https://sts.us-east-1.amazonaws.com.cn",  # .cn only for cn- regions
        "https://sts.cn-north-1.amazonaws.com",
        "https://sts.US-EAST-1.amazonaws.com.evil",
        "https://sts.useast1.amazonaws.com",
        "https://sts.us-east-1a.amazonaws.com",
        "https://sts.us-east-1.amazonaws.com/path",
        "https://sts.amazonaws.com/?Action=AssumeRole",
        "https://sts.amazonaws.com/?",
        "https://sts.amazonaws.com/#frag",
        "https://user:pw@sts.amazonaws.com",
        "https://sts.amazonaws.com@evil.example",
        "https://sts.amazonaws.com\\@evil.example",
        "https://sts.amazon\naws.com",  # urlsplit would silently drop the newline
        "https://sts.amazon\taws.com",
        " https://sts.amazonaws.com",
        "ftp://sts.amazonaws.com",
        "sts.amazonaws.com",
        "//sts.amazonaws.com",
        "https://",
        "https://sts.amazonaws.com:99999",
        "https://sts.amazonaws.com:0",
        "https://[::1",
        "https://[fe80::1%25eth0]:5000",
        "http://127.0.0.1:5001",  # not listed
        "http://127.0.0.1",  # port differs from the extra
        "http://localhost:5000",  # another spelling of the extra is not the extra
        "https://127.0.0.1:5000",
        "https://sts.amazonaws.com/" + "a" * 3000,
        "",
    ],
)
def test_refused(url: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_sts_url(url, EXTRAS)
    assert "STRONGROOM_STS_EXTRA_ENDPOINTS" in caught.value.message


def test_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        validate_sts_url(None, EXTRAS)  # type: ignore[arg-type]


def test_broken_extra_endpoint_matches_nothing() -> None:
    with pytest.raises(InvalidRequestError):
        validate_sts_url("http://127.0.0.1:5000/x", ["http://127.0.0.1:5000/x"])


def test_ipv6_extra_endpoint() -> None:
    assert validate_sts_url("http://[::1]:5000/", ["http://[0:0::1]:5000"]) == "http://[::1]:5000"


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("https://sts.amazonaws.com", "us-east-1"),
        ("https://sts.eu-west-3.amazonaws.com", "eu-west-3"),
        ("https://sts.us-gov-east-1.amazonaws.com", "us-gov-east-1"),
        ("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("http://127.0.0.1:5000", None),
    ],
)
def test_aws_sts_region(endpoint: str, region: str | None) -> None:
    assert aws_sts_region(endpoint) == region


def test_normalize_endpoint_drops_default_ports() -> None:
    assert normalize_endpoint("http://example.test:80/") == "http://example.test"


def test_parse_extra_endpoints() -> None:
    assert parse_extra_endpoints(["http://127.0.0.1:5000/", "HTTP://127.0.0.1:5000"]) == (
        "http://127.0.0.1:5000",
    )
    with pytest.raises(ConfigurationError, match="STRONGROOM_STS_EXTRA_ENDPOINTS"):
        parse_extra_endpoints(["http://127.0.0.1:5000/path"])


# -- STRONGROOM_STS_CONNECT_TO ----------------------------------------------------------------


def test_parse_connect_to() -> None:
    assert parse_connect_to(
        [
            "STS.amazonaws.com=http://127.0.0.1:5000/",
            "sts.us-east-1.amazonaws.com = https://vpce-0a1b-2c3d.sts.us-east-1.vpce.amazonaws.com",
        ]
    ) == {
        "sts.amazonaws.com": "http://127.0.0.1:5000",
        "sts.us-east-1.amazonaws.com": "https://vpce-0a1b-2c3d.sts.us-east-1.vpce.amazonaws.com",
    }
    assert parse_connect_to([]) == {}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("sts.amazonaws.com", "expected host=URL"),
        ("=http://127.0.0.1:5000", "expected host=URL"),
        ("sts.amazonaws.com=", "expected host=URL"),
        ("https://sts.amazonaws.com=http://127.0.0.1:5000", "bare host name"),
        ("sts.amazonaws.com:443=http://127.0.0.1:5000", "bare host name"),
        ("sts amazonaws.com=http://127.0.0.1:5000", "not a valid DNS name"),
        ("sts.amazonaws.com=127.0.0.1:5000", "https://"),
        ("sts.amazonaws.com=ftp://127.0.0.1", "https://"),
        ("sts.amazonaws.com=http://127.0.0.1:5000/sts", "no path"),
        ("sts.amazonaws.com=http://127.0.0.1:5000/?a=b", "no path"),
        ("sts.amazonaws.com=http://user@127.0.0.1:5000", "credentials"),
    ],
)
def test_parse_connect_to_refuses(entry: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="STRONGROOM_STS_CONNECT_TO") as raised:
        parse_connect_to([entry])
    assert problem in str(raised.value)


def test_parse_connect_to_refuses_a_host_named_twice() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        parse_connect_to(
            ["sts.amazonaws.com=http://127.0.0.1:1", "STS.amazonaws.com=http://[::1]:2"]
        )


def test_connection_origin_moves_only_the_named_host() -> None:
    routes = {"sts.amazonaws.com": "http://127.0.0.1:5000"}
    assert connection_origin("https://sts.amazonaws.com", routes) == "http://127.0.0.1:5000"
    assert (
        connection_origin("https://sts.eu-west-1.amazonaws.com", routes)
        == "https://sts.eu-west-1.amazonaws.com"
    )
    assert connection_origin("https://sts.amazonaws.com", {}) == "https://sts.amazonaws.com"
