"""vet_sts_request and its checks: one accepting and several refusing rows per SPEC check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from strongroom.auth.aws_iam import (
    LOGIN_NONCE_HEADER,
    SERVER_ID_HEADER,
    VAULT_SERVER_ID_HEADER,
    UnverifiedStsRequest,
)
from strongroom.auth.aws_iam.vetting import (
    check_body,
    check_freshness,
    parse_authorization,
)
from strongroom.errors import AuthenticationDenied, InvalidRequestError
from tests.aws_iam.factories import (
    FAKE_CREDENTIALS,
    NOW,
    signed_fields,
    signed_request,
    vet,
    with_headers,
)

SIG = "a" * 64
AUTH_PREFIX = "AWS4-HMAC-SHA256 Credential=ASIAFAKEEXAMPLE00001/20261127/us-east-1/sts/aws4_request"
EXTRA = "http://127.0.0.1:5000"


# -- accepted ------------------------------------------------------------------------------


def test_botocore_request_is_rebuilt() -> None:
    request = signed_request()
    vetted = vet(request)
    assert vetted.endpoint == "https://sts.amazonaws.com"
    assert vetted.path == "/"
    assert vetted.body == b"Action=GetCallerIdentity&Version=2011-06-15"
    assert vetted.amz_date == NOW
    assert vetted.usable_until == NOW + timedelta(minutes=15)
    assert vetted.region == "us-east-1"
    assert vetted.access_key_id == FAKE_CREDENTIALS.access_key_id
    authorization = dict(request.headers)["Authorization"]
    assert vetted.signature == authorization[-64:]
    assert [name for name, _ in vetted.headers] == [
        "Host",
        "Authorization",
        "Content-Type",
        "X-Amz-Date",
        "X-Amz-Security-Token",
    ]
    assert vetted.headers[0] == ("Host", "sts.amazonaws.com")


def test_repr_hides_signature_and_token() -> None:
    request = signed_request()
    vetted = vet(request)
    for text in (repr(request), repr(vetted)):
        assert vetted.signature not in text
        assert str(FAKE_CREDENTIALS.session_token) not in text
    assert "X-Amz-Security-Token" in repr(request)
    assert vetted.signature not in repr(parse_authorization(dict(vetted.headers)["Authorization"]))


def test_header_names_are_case_insensitive_and_canonicalised() -> None:
    request = signed_request()
    lowered = UnverifiedStsRequest(
        request.method,
        request.url,
        request.body,
        tuple((name.lower(), value) for name, value in request.headers),
    )
    assert vet(lowered).headers == vet(request).headers


@pytest.mark.parametrize(
    ("sign_kwargs", "vet_kwargs"),
    [
        pytest.param({"extra_headers": {"Host": "sts.amazonaws.com"}}, {}, id="hvac-style Host"),
        pytest.param(
            {"server_id": "vault-a.example"}, {"server_id": "vault-a.example"}, id="server id"
        ),
        pytest.param({"server_id": "unused"}, {}, id="server id sent but not required"),
        pytest.param(
            {"url": "https://sts.eu-west-1.amazonaws.com/", "region": "eu-west-1"},
            {"sts_url": "https://sts.eu-west-1.amazonaws.com"},
            id="regional endpoint",
        ),
        pytest.param(
            {"url": "https://sts.cn-north-1.amazonaws.com.cn/", "region": "cn-north-1"},
            {"sts_url": "https://sts.cn-north-1.amazonaws.com.cn/"},
            id="china endpoint",
        ),
        pytest.param(
            {"url": EXTRA + "/", "region": "eu-west-3"}, {"sts_url": EXTRA}, id="extra endpoint"
        ),
        pytest.param({"url": "https://sts.amazonaws.com"}, {}, id="empty path"),
        pytest.param({"amz_date": NOW - timedelta(minutes=15)}, {}, id="15 min old"),
        pytest.param({"amz_date": NOW + timedelta(minutes=15)}, {}, id="15 min ahead"),
        pytest.param(
            {"extra_headers": {"User-Agent": "aws-sdk-python", "Content-Length": "43"}},
            {},
            id="user agent and content length",
        ),
        pytest.param(
            {"extra_headers": {"X-Amz-Content-Sha256": "0" * 64}}, {}, id="content sha256"
        ),
    ],
)
def test_accepted(sign_kwargs: dict[str, object], vet_kwargs: dict[str, object]) -> None:
    vetted = vet(signed_request(**sign_kwargs), **vet_kwargs)  # type: ignore[arg-type]
    assert vetted.path == "/"


def test_extra_endpoint_host_carries_its_port() -> None:
    vetted = vet(signed_request(url=EXTRA + "/"), sts_url=EXTRA)
    assert vetted.headers[0] == ("Host", "127.0.0.1:5000")
    assert vetted.endpoint == EXTRA


def test_akeyless_two_space_authorization_is_accepted() -> None:
    request = signed_request()
    authorization = dict(request.headers)["Authorization"].replace(", ", ",  ")
    assert vet(with_headers(request, set_={"Authorization": authorization})).signature


# -- refused -------------------------------------------------------------------------------

Mutation = Callable[[UnverifiedStsRequest], UnverifiedStsRequest]


def replace(**changes: object) -> Mutation:
    return lambda request: dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def headers(**kwargs: object) -> Mutation:
    return lambda request: with_headers(request, **kwargs)  # type: ignore[arg-type]


DENIED = AuthenticationDenied
INVALID = InvalidRequestError


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        # (7) sizes
        pytest.param(replace(body=b"x" * 1025), INVALID, "over 1024", id="body too big"),
        pytest.param(replace(method="P" * 17), INVALID, "method is too long", id="long method"),
        pytest.param(
            headers(add=tuple(("User-Agent", "x") for _ in range(13))),
            INVALID,
            "more than 16 headers",
            id="too many headers",
        ),
        pytest.param(
            headers(set_={"User-Agent": "x" * 4097}), INVALID, "longer than 4096", id="big value"
        ),
        pytest.param(headers(add=(("X" * 65, "v"),)), INVALID, "header name", id="long name"),
        # (1) method
        pytest.param(replace(method="GET"), DENIED, "only 'POST'", id="GET"),
        pytest.param(replace(method="post"), DENIED, "only 'POST'", id="lower-case post"),
        pytest.param(replace(method=""), DENIED, "only 'POST'", id="empty method"),
        # (1) URL: server-side request forgery
        pytest.param(replace(url="https://evil.example/"), DENIED, "sts_url is", id="another host"),
        pytest.param(
            replace(url="http://169.254.169.254/"), DENIED, "sts_url is", id="metadata service"
        ),
        pytest.param(
            replace(url="http://sts.amazonaws.com/"), DENIED, "sts_url is", id="plain http"
        ),
        pytest.param(
            replace(url="https://sts.amazonaws.com:8443/"), DENIED, "sts_url is", id="other port"
        ),
        pytest.param(
            replace(url="https://sts.us-west-2.amazonaws.com/"),
            DENIED,
            "sts_url is",
            id="other region endpoint",
        ),
        pytest.param(replace(url="https://sts.amazonaws.com/latest/"), DENIED, "path", id="path"),
        pytest.param(replace(url="https://sts.amazonaws.com//"), DENIED, "path", id="double slash"),
        pytest.param(
            replace(url="https://sts.amazonaws.com/?Action=AssumeRole"),
            DENIED,
            "query",
            id="query",
        ),
        pytest.param(replace(url="https://sts.amazonaws.com/?"), DENIED, "query", id="empty query"),
        pytest.param(replace(url="https://sts.amazonaws.com/#x"), DENIED, "fragment", id="frag"),
        pytest.param(
            replace(url="https://a:b@sts.amazonaws.com/"), DENIED, "credentials", id="userinfo"
        ),
        pytest.param(
            replace(url="https://sts.amazonaws.com@evil.example/"),
            DENIED,
            "credentials",
            id="userinfo confusion",
        ),
        pytest.param(replace(url="not a url"), INVALID, "visible ASCII", id="unparsable url"),
        pytest.param(replace(url="https://[::1/"), INVALID, "cannot be parsed", id="bad ipv6"),
        pytest.param(replace(url="gopher://sts.amazonaws.com/"), INVALID, "https://", id="scheme"),
        # (2) body: forged action
        pytest.param(
            replace(body=b"Action=AssumeRole&Version=2011-06-15"), DENIED, "body", id="AssumeRole"
        ),
        pytest.param(
            replace(body=b"Action=GetCallerIdentity&Version=2011-06-15&Foo=bar"),
            DENIED,
            "body",
            id="extra field",
        ),
        pytest.param(
            replace(body=b"Action=GetCallerIdentity&Action=GetCallerIdentity&Version=2011-06-15"),
            DENIED,
            "body",
            id="action twice",
        ),
        pytest.param(
            replace(body=b"Action=GetCallerIdentity&Version=2011-06-15&Version=2011-06-15"),
            DENIED,
            "body",
            id="version twice",
        ),
        pytest.param(replace(body=b"Action=GetCallerIdentity"), DENIED, "body", id="no version"),
        pytest.param(
            replace(body=b"Action=GetCallerIdentity&Version=2099-01-01"),
            DENIED,
            "body",
            id="other version",
        ),
        pytest.param(replace(body=b""), DENIED, "body", id="empty body"),
        pytest.param(replace(body=b"\xff\xfe"), DENIED, "body", id="binary body"),
        pytest.param(replace(body=b"Action"), DENIED, "body", id="not a form"),
        pytest.param(
            replace(body=b"Action=GetCallerIdentity;Version=2011-06-15"),
            DENIED,
            "body",
            id="semicolon separator",
        ),
        # (3) headers
        pytest.param(
            headers(add=(("X-Amz-Foo", "bar"),)), DENIED, "'X-Amz-Foo' is not allowed", id="x-amz"
        ),
        pytest.param(
            headers(add=(("X-Vault-Token", "hvs.a"),)), DENIED, "not allowed", id="vault token"
        ),
        pytest.param(
            headers(add=(("Transfer-Encoding", "chunked"),)), DENIED, "not allowed", id="te"
        ),
        pytest.param(headers(add=(("Connection", "close"),)), DENIED, "not allowed", id="hop"),
        pytest.param(
            headers(add=(("x-amz-date", "20261127T194350Z"),)),
            DENIED,
            "X-Amz-Date appears more than once",
            id="duplicate by case",
        ),
        pytest.param(
            headers(add=(("User-Agent", "a"), ("User-Agent", "b"))),
            DENIED,
            "more than once",
            id="duplicate",
        ),
        pytest.param(headers(add=(("Bad Name", "v"),)), INVALID, "HTTP token", id="bad name"),
        pytest.param(
            headers(set_={"User-Agent": "a\r\nX-Injected: 1"}),
            INVALID,
            "control",
            id="CRLF injection",
        ),
        pytest.param(
            headers(set_={"User-Agent": "caf\u00e9"}), INVALID, "non-ASCII", id="non-ascii value"
        ),
        pytest.param(
            headers(drop=("authorization",)), INVALID, "no Authorization", id="no authorization"
        ),
        pytest.param(
            headers(set_={"Authorization": "AWS4-HMAC-SHA256 nonsense"}),
            INVALID,
            "Authorization header is not",
            id="garbled authorization",
        ),
        pytest.param(
            headers(
                set_={
                    "Authorization": AUTH_PREFIX.replace("/sts/", "/s3/")
                    + f", SignedHeaders=host;x-amz-date, Signature={SIG}"
                }
            ),
            INVALID,
            "Authorization header is not",
            id="other service",
        ),
        pytest.param(
            headers(
                set_={
                    "Authorization": AUTH_PREFIX
                    + ", SignedHeaders=content-type;x-amz-date;x-amz-security-token"
                    + f", Signature={SIG}"
                }
            ),
            DENIED,
            "does not include host",
            id="host unsigned",
        ),
        pytest.param(
            headers(
                set_={
                    "Authorization": AUTH_PREFIX
                    + ", SignedHeaders=content-type;host;x-amz-security-token"
                    + f", Signature={SIG}"
                }
            ),
            DENIED,
            "does not include x-amz-date",
            id="date unsigned",
        ),
        pytest.param(
            headers(
                set_={
                    "Authorization": AUTH_PREFIX
                    + ", SignedHeaders=content-type;host;x-amz-date;x-custom"
                    + f", Signature={SIG}"
                }
            ),
            DENIED,
            "'x-custom', which is not in the request",
            id="signed header absent",
        ),
        pytest.param(
            headers(
                set_={
                    "Authorization": AUTH_PREFIX.replace("us-east-1", "eu-west-1")
                    + ", SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"
                    + f", Signature={SIG}"
                }
            ),
            DENIED,
            "signed for region eu-west-1",
            id="region mismatch",
        ),
        pytest.param(
            headers(add=(("Content-Length", "44"),)),
            DENIED,
            "Content-Length is 44",
            id="content length mismatch",
        ),
        pytest.param(
            headers(add=(("Content-Length", "4 3"),)), INVALID, "not a number", id="bad length"
        ),
        pytest.param(
            headers(add=(("Host", "evil.example"),)), DENIED, "Host header names", id="host"
        ),
        pytest.param(
            headers(add=(("Host", "sts.amazonaws.com:443"),)),
            DENIED,
            "Host header names",
            id="host with port",
        ),
        # (4) date
        pytest.param(
            headers(drop=("x-amz-date",)),
            DENIED,
            "names 'x-amz-date', which is not in the request",
            id="no date",
        ),
        pytest.param(
            headers(set_={"X-Amz-Date": "2026-11-27T19:43:50Z"}), INVALID, "form", id="iso date"
        ),
        pytest.param(
            headers(set_={"X-Amz-Date": "20261327T194350Z"}),
            INVALID,
            "not a valid date",
            id="month 13",
        ),
        pytest.param(
            headers(set_={"X-Amz-Date": "20261127T184350Z"}),
            DENIED,
            "before the server's clock",
            id="stale",
        ),
        pytest.param(
            headers(set_={"X-Amz-Date": "20261127T203000Z"}),
            DENIED,
            "after the server's clock",
            id="future",
        ),
    ],
)
def test_refused(mutate: Mutation, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as caught:
        vet(mutate(signed_request()))
    text = (
        caught.value.reason if isinstance(caught.value, AuthenticationDenied) else str(caught.value)
    )
    assert fragment in text
    assert str(FAKE_CREDENTIALS.session_token) not in text


def test_scope_date_must_be_the_day_of_x_amz_date() -> None:
    # Signed at 00:05 on the 28th but the scope says the 27th.
    request = signed_request(amz_date=NOW.replace(day=28, hour=0, minute=5))
    authorization = dict(request.headers)["Authorization"].replace("/20261128/", "/20261127/")
    request = with_headers(request, set_={"Authorization": authorization})
    with pytest.raises(AuthenticationDenied) as caught:
        vet(request, now=NOW.replace(day=28, hour=0, minute=0))
    assert "credential scope date 20261127" in caught.value.reason


# -- (5) server ID -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sign_kwargs", "fragment"),
    [
        pytest.param({}, f"no {SERVER_ID_HEADER} header", id="missing"),
        pytest.param({"server_id": "vault-b.example"}, "another server", id="other server"),
        pytest.param({"server_id": "VAULT-A.EXAMPLE"}, "another server", id="case differs"),
        pytest.param({"server_id": "vault-a.example "}, "", id="trailing space trimmed"),
    ],
)
def test_server_id_refused(sign_kwargs: dict[str, object], fragment: str) -> None:
    request = signed_request(**sign_kwargs)
    if fragment == "":
        # Trailing whitespace is not part of a header value: this one is accepted.
        assert vet(request, server_id="vault-a.example").signature
        return
    with pytest.raises(AuthenticationDenied) as caught:
        vet(request, server_id="vault-a.example")
    assert fragment in caught.value.reason


def test_server_id_must_be_signed() -> None:
    # Added after signing, as whoever captured the request would: refused before STS sees it.
    request = with_headers(signed_request(), add=((SERVER_ID_HEADER, "vault-a.example"),))
    with pytest.raises(AuthenticationDenied) as caught:
        vet(request, server_id="vault-a.example")
    assert "not listed in SignedHeaders" in caught.value.reason


@pytest.mark.parametrize(
    "sign_kwargs",
    [
        pytest.param({"extra_headers": {VAULT_SERVER_ID_HEADER: "vault-a.example"}}, id="vault"),
        pytest.param(
            {
                "server_id": "vault-a.example",
                "extra_headers": {VAULT_SERVER_ID_HEADER: "vault-a.example"},
            },
            id="both names, equal",
        ),
    ],
)
def test_vaults_server_id_header_is_the_same_header(sign_kwargs: dict[str, object]) -> None:
    """hvac's ``header_value`` and the vault CLI send X-Vault-AWS-IAM-Server-ID."""
    vetted = vet(signed_request(**sign_kwargs), server_id="vault-a.example")
    # Sent on under its own name: the signature covers the name the client signed.
    assert dict(vetted.headers)[VAULT_SERVER_ID_HEADER] == "vault-a.example"


@pytest.mark.parametrize(
    ("request_", "server_id", "fragment"),
    [
        pytest.param(
            signed_request(extra_headers={VAULT_SERVER_ID_HEADER: "vault-b.example"}),
            "vault-a.example",
            f"{VAULT_SERVER_ID_HEADER} names another server",
            id="vault header, other server",
        ),
        pytest.param(
            with_headers(signed_request(), add=((VAULT_SERVER_ID_HEADER, "vault-a.example"),)),
            "vault-a.example",
            f"{VAULT_SERVER_ID_HEADER} is not listed in SignedHeaders",
            id="vault header added after signing",
        ),
        # Two audiences in one request: whichever a reader looks at decides (differential).
        pytest.param(
            signed_request(
                server_id="vault-a.example",
                extra_headers={VAULT_SERVER_ID_HEADER: "vault-b.example"},
            ),
            "vault-a.example",
            "name different servers",
            id="both names disagree",
        ),
        pytest.param(
            signed_request(
                server_id="vault-a.example",
                extra_headers={VAULT_SERVER_ID_HEADER: "vault-b.example"},
            ),
            None,
            "name different servers",
            id="both names disagree, no SERVER_ID",
        ),
        pytest.param(
            with_headers(
                signed_request(server_id="vault-a.example"),
                add=((VAULT_SERVER_ID_HEADER, "vault-a.example"),),
            ),
            "vault-a.example",
            f"{VAULT_SERVER_ID_HEADER} is not listed in SignedHeaders",
            id="second name added after signing",
        ),
    ],
)
def test_vault_server_id_refused(
    request_: UnverifiedStsRequest, server_id: str | None, fragment: str
) -> None:
    with pytest.raises(AuthenticationDenied) as caught:
        vet(request_, server_id=server_id)
    assert fragment in caught.value.reason


# -- (3) login nonce -----------------------------------------------------------------------


@pytest.mark.parametrize("nonce", ["a" * 16, "Z9_-" * 16, "0123456789abcdefABCDEF_-"])
def test_a_signed_login_nonce_is_accepted_and_sent(nonce: str) -> None:
    vetted = vet(signed_request(extra_headers={LOGIN_NONCE_HEADER: nonce}))
    assert dict(vetted.headers)[LOGIN_NONCE_HEADER] == nonce


def test_the_nonce_makes_same_second_signatures_differ() -> None:
    """Same key, same second: only the nonce tells the two requests apart."""
    first = vet(signed_request(extra_headers={LOGIN_NONCE_HEADER: "a" * 16}))
    second = vet(signed_request(extra_headers={LOGIN_NONCE_HEADER: "b" * 16}))
    assert first.amz_date == second.amz_date
    assert first.signature != second.signature


@pytest.mark.parametrize(
    "nonce",
    ["a" * 15, "a" * 65, "a" * 15 + "=", "a" * 15 + "+", "a" * 15 + "/", "a" * 15 + ".", ""],
)
def test_a_malformed_login_nonce_is_400(nonce: str) -> None:
    with pytest.raises(InvalidRequestError, match=LOGIN_NONCE_HEADER):
        vet(signed_request(extra_headers={LOGIN_NONCE_HEADER: nonce}))


def test_an_unsigned_login_nonce_is_refused() -> None:
    # Added after signing it changes nothing STS checks: the client believes in a protection
    # it does not have. Said at once rather than as a random same-second replay later.
    request = with_headers(signed_request(), add=((LOGIN_NONCE_HEADER, "a" * 16),))
    with pytest.raises(AuthenticationDenied) as caught:
        vet(request)
    assert "not listed in SignedHeaders" in caught.value.reason


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        vet(signed_request(), now=NOW.replace(tzinfo=None))


# -- pure parsers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"{AUTH_PREFIX}, SignedHeaders=host;x-amz-date, Signature={SIG}",
        f"{AUTH_PREFIX},  SignedHeaders=host;x-amz-date,  Signature={SIG}",
        f"{AUTH_PREFIX.replace('us-east-1', 'us-gov-west-1')}, SignedHeaders=host, Signature={SIG}",
    ],
)
def test_parse_authorization_accepts(value: str) -> None:
    parsed = parse_authorization(value)
    assert parsed.access_key_id == "ASIAFAKEEXAMPLE00001"
    assert parsed.signature == SIG


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"AWS4-HMAC-SHA1 Credential=ASIAFAKEEXAMPLE00001/20261127/us-east-1/sts/aws4_request"
        f", SignedHeaders=host, Signature={SIG}",
        f"{AUTH_PREFIX}, SignedHeaders=host;x-amz-date, Signature={SIG[:-1]}",
        f"{AUTH_PREFIX}, SignedHeaders=host;x-amz-date, Signature={SIG.upper()}",
        f"{AUTH_PREFIX}, SignedHeaders=host;x-amz-date, Signature={SIG}, Extra=1",
        f"{AUTH_PREFIX},   SignedHeaders=host, Signature={SIG}",
        f"{AUTH_PREFIX},SignedHeaders=host, Signature={SIG}",
        f"{AUTH_PREFIX}, SignedHeaders=Host, Signature={SIG}",
        f"{AUTH_PREFIX}, SignedHeaders=, Signature={SIG}",
        f"{AUTH_PREFIX.replace('us-east-1', 'mars')}, SignedHeaders=host, Signature={SIG}",
        f"{AUTH_PREFIX.replace('ASIAFAKE', 'asiafake')}, SignedHeaders=host, Signature={SIG}",
        f"{AUTH_PREFIX.replace('20261127', '2026112')}, SignedHeaders=host, Signature={SIG}",
        f" {AUTH_PREFIX}, SignedHeaders=host, Signature={SIG}",
    ],
)
def test_parse_authorization_refuses(value: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_authorization(value)


@pytest.mark.parametrize(
    "body",
    [
        b"Action=GetCallerIdentity&Version=2011-06-15",
        b"Version=2011-06-15&Action=GetCallerIdentity",
        b"Action=GetCaller%49dentity&Version=2011-06-15",  # STS decodes it the same way
    ],
)
def test_check_body_accepts(body: bytes) -> None:
    check_body(body)


@pytest.mark.parametrize(
    ("offset", "allowed"),
    [
        (timedelta(0), True),
        (timedelta(minutes=15), True),
        (-timedelta(minutes=15), True),
        (timedelta(minutes=15, seconds=1), False),
        (-timedelta(minutes=15, seconds=1), False),
        (timedelta(days=2), False),
    ],
)
def test_check_freshness(offset: timedelta, allowed: bool) -> None:
    amz_date = NOW + offset
    if allowed:
        check_freshness(amz_date, NOW, timedelta(minutes=15))
    else:
        with pytest.raises(AuthenticationDenied):
            check_freshness(amz_date, NOW, timedelta(minutes=15))


def test_custom_max_skew() -> None:
    from strongroom.auth.aws_iam import vet_sts_request

    request = signed_request(amz_date=NOW - timedelta(minutes=2))
    with pytest.raises(AuthenticationDenied):
        vet_sts_request(
            request,
            sts_url="https://sts.amazonaws.com",
            server_id=None,
            now=NOW,
            max_skew=timedelta(minutes=1),
        )


def test_signed_fields_shape() -> None:
    fields = signed_fields()
    assert set(fields) >= {
        "cloud_id",
        "iam_http_request_method",
        "iam_request_url",
        "iam_request_body",
        "iam_request_headers",
    }
