"""Which new connections a worker hands to a login process: ``starts_login_request`` on the
first bytes of a connection. Only the exact login request line of HTTP/1.1 or 1.0, in a first
chunk that fits one Unix-socket message, is a login; everything else stays with the worker."""

from __future__ import annotations

import pytest

from strongroom.serving.routing import MAX_FIRST_CHUNK, starts_login_request

BODY = b'{"access_id":"p-abcdefabcdef","access_type":"access_key","access_key":"k"}'
HEADERS = (
    b"Host: 127.0.0.1:8300\r\nContent-Type: application/json\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(BODY)
)


@pytest.mark.parametrize(
    "first_chunk",
    [
        pytest.param(b"POST /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="http-1.1-whole"),
        pytest.param(b"POST /v1/auth/login HTTP/1.0\r\n" + HEADERS + BODY, id="http-1.0-whole"),
        pytest.param(b"POST /v1/auth/login HTTP/1.1\r\n", id="request-line-only"),
        pytest.param(b"POST /v1/auth/login HTTP/1.1\r\n" + HEADERS, id="headers-no-body-yet"),
        pytest.param(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\n", id="headers-partial"),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY + b"GET / HTTP/1.1\r\n\r\n",
            id="pipelined-second-request",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\n".ljust(MAX_FIRST_CHUNK, b"x"),
            id="exactly-max-first-chunk",
        ),
    ],
)
def test_login_request_lines_are_handed_over(first_chunk: bytes) -> None:
    assert starts_login_request(first_chunk) is True


@pytest.mark.parametrize(
    "first_chunk",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"POST /v1/auth/lo", id="partial-request-line"),
        pytest.param(b"POST /v1/auth/login", id="request-line-without-version"),
        pytest.param(b"POST /v1/auth/login HTTP/1.1", id="request-line-without-crlf"),
        pytest.param(b"POST /v1/auth/login HTTP/1.1\n", id="bare-lf"),
        pytest.param(b"GET /v1/auth/login HTTP/1.1\r\n\r\n", id="get-login"),
        pytest.param(b"PUT /v1/auth/login HTTP/1.1\r\n\r\n", id="put-login"),
        pytest.param(b"post /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="lower-case-post"),
        pytest.param(b"POST /v1/auth/login?x=1 HTTP/1.1\r\n" + HEADERS + BODY, id="query-string"),
        pytest.param(b"POST /v1/auth/login/ HTTP/1.1\r\n" + HEADERS + BODY, id="trailing-slash"),
        pytest.param(b"POST /v1/auth/loginx HTTP/1.1\r\n" + HEADERS + BODY, id="longer-path"),
        pytest.param(b"POST /v1/auth/LOGIN HTTP/1.1\r\n" + HEADERS + BODY, id="upper-case-path"),
        pytest.param(b"POST //v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="double-slash"),
        pytest.param(
            b"POST http://127.0.0.1/v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY,
            id="absolute-form",
        ),
        pytest.param(b"POST  /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="two-spaces"),
        pytest.param(b"\r\nPOST /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="leading-crlf"),
        pytest.param(b" POST /v1/auth/login HTTP/1.1\r\n" + HEADERS + BODY, id="leading-space"),
        pytest.param(b"POST /v1/auth/login HTTP/2.0\r\n" + HEADERS + BODY, id="http-2.0"),
        pytest.param(b"POST /v1/auth/login HTTP/1.2\r\n" + HEADERS + BODY, id="http-1.2"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="h2-preface"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-client-hello"),
        pytest.param(b"POST /v1/auth/token HTTP/1.1\r\n" + HEADERS + BODY, id="other-auth-path"),
        pytest.param(b"POST /v1/secrets HTTP/1.1\r\n" + HEADERS + BODY, id="secrets"),
        pytest.param(b"GET /v1/sys/health HTTP/1.1\r\n\r\n", id="health"),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\n".ljust(MAX_FIRST_CHUNK + 1, b"x"),
            id="bigger-than-max-first-chunk",
        ),
        pytest.param(
            b"POST /v1/auth/login HTTP/1.1\r\n" + HEADERS + b"x" * (4 * MAX_FIRST_CHUNK),
            id="much-bigger-than-max-first-chunk",
        ),
    ],
)
def test_everything_else_stays_with_the_worker(first_chunk: bytes) -> None:
    assert starts_login_request(first_chunk) is False


def test_max_first_chunk_fits_a_login() -> None:
    # A login body (an AWS IAM cloud_id is a few KiB) plus headers must fit, or every login
    # would stay with the worker.
    assert 16 * 1024 <= MAX_FIRST_CHUNK <= 200 * 1024
