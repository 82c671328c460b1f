"""StsClient against the scripted stub: timeouts, retries, hostile answers, redirects."""

from __future__ import annotations

import gzip
import time

import pytest

from strongroom.auth.aws_iam import CallerIdentity, StsClient, create_sts_http_client
from strongroom.auth.aws_iam import sts_client as sts_client_module
from strongroom.auth.aws_iam.vetting import VettedStsRequest
from strongroom.errors import AuthenticationDenied, UpstreamUnavailableError
from tests.aws_iam.factories import FAKE_CREDENTIALS, signed_request, vet
from tests.support.moto_sts import free_port
from tests.support.stub_sts import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    NOT_XML,
    Reply,
    Reset,
    StubSts,
    error_xml,
    identity_xml,
    redirect,
)

pytestmark = pytest.mark.anyio

EXPECTED = CallerIdentity(
    "arn:aws:sts::123456789012:assumed-role/app-role/i-0abc1234567890def",
    "AROAEXAMPLEROLEID0001:i-0abc1234567890def",
    "123456789012",
)


def vetted_for(url: str) -> VettedStsRequest:
    return vet(signed_request(url=url + "/"), sts_url=url)


async def call(url: str, *, budget: float = 2.0) -> CallerIdentity:
    """Vet a request for ``url`` and replay it with a ``budget``-second StsClient."""
    async with create_sts_http_client(budget) as http:
        return await StsClient(http, timeout=budget).get_caller_identity(vetted_for(url))


async def test_success_sends_exactly_the_vetted_request(stub_sts: StubSts) -> None:
    vetted = vetted_for(stub_sts.url)
    async with create_sts_http_client(2.0) as http:
        identity = await StsClient(http, timeout=2.0).get_caller_identity(vetted)
    assert identity == EXPECTED
    [received] = stub_sts.requests
    assert received.method == "POST"
    assert received.path == "/"
    assert received.body == vetted.body
    sent = [(name.lower(), value) for name, value in received.headers]
    # Exactly what was vetted, plus the Content-Length httpx computes; no client defaults
    # (User-Agent, Accept-Encoding, …) that the signature does not cover.
    assert sent == [(name.lower(), value) for name, value in vetted.headers] + [
        ("content-length", str(len(vetted.body)))
    ]


async def test_slow_sts_times_out_within_the_budget(stub_sts: StubSts) -> None:
    stub_sts.enqueue(Reply(200, identity_xml(), delay=5.0))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(stub_sts.url, budget=0.5)
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert "did not answer within 0.5 s" in caught.value.reason


async def test_timeout_budget_includes_the_retry(stub_sts: StubSts) -> None:
    stub_sts.enqueue(Reply(500, delay=0.3), Reply(200, identity_xml(), delay=5.0))
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError):
        await call(stub_sts.url, budget=0.6)
    assert time.monotonic() - started < 1.5
    assert stub_sts.request_count == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_twice_is_upstream_failure_after_exactly_two_attempts(
    stub_sts: StubSts, status: int
) -> None:
    stub_sts.enqueue(Reply(status), Reply(status), Reply(200, identity_xml()))
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(stub_sts.url)
    assert stub_sts.request_count == 2
    assert f"HTTP {status}; then HTTP {status}" in caught.value.reason


async def test_5xx_then_200_succeeds(stub_sts: StubSts) -> None:
    stub_sts.enqueue(Reply(503, b"busy", content_type="text/plain"))
    assert await call(stub_sts.url) == EXPECTED
    assert stub_sts.request_count == 2


async def test_connection_reset_then_200_succeeds(stub_sts: StubSts) -> None:
    stub_sts.enqueue(Reset())
    assert await call(stub_sts.url) == EXPECTED
    assert stub_sts.request_count == 2


async def test_reset_twice_is_upstream_failure(stub_sts: StubSts) -> None:
    stub_sts.enqueue(Reset(), Reset())
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(stub_sts.url)
    assert "connection failed" in caught.value.reason
    assert stub_sts.request_count == 2


async def test_connection_refused_is_upstream_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(url)
    assert "failed twice: connection failed (ConnectError)" in caught.value.reason
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        pytest.param(Reply(200, NOT_XML, "application/json"), "not XML", id="json"),
        pytest.param(Reply(200, NOT_XML, "text/xml"), "not well-formed", id="json as xml"),
        pytest.param(Reply(200, b"<html>hi</html>", "text/html"), "not XML", id="html"),
        pytest.param(Reply(200, identity_xml(), None), "not XML", id="no content type"),
        pytest.param(Reply(200, BILLION_LAUGHS), "hostile XML refused", id="billion laughs"),
        pytest.param(Reply(200, EXTERNAL_ENTITY), "hostile XML refused", id="external entity"),
        pytest.param(Reply(200, b"x" * (70 * 1024)), "over 65536 bytes", id="oversized"),
        pytest.param(
            Reply(200, gzip.compress(identity_xml()), headers=(("Content-Encoding", "gzip"),)),
            "compressed",
            id="gzip",
        ),
        pytest.param(
            Reply(400, error_xml("Throttling", "Rate exceeded")), "refusing requests", id="throttle"
        ),
        pytest.param(Reply(404, b"not found", "text/plain"), "unexpected HTTP 404", id="404"),
        pytest.param(Reply(204), "unexpected HTTP 204", id="204"),
    ],
)
async def test_unusable_answers_are_upstream_failures(
    stub_sts: StubSts, reply: Reply, fragment: str
) -> None:
    stub_sts.enqueue(reply)
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(stub_sts.url)
    assert fragment in caught.value.reason
    assert stub_sts.request_count == 1  # not retried


async def test_redirect_is_not_followed(stub_sts: StubSts) -> None:
    with StubSts() as target:
        stub_sts.enqueue(redirect(target.url + "/"))
        with pytest.raises(UpstreamUnavailableError) as caught:
            await call(stub_sts.url)
        assert "redirects are not followed" in caught.value.reason
        assert target.request_count == 0
    assert stub_sts.request_count == 1


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        pytest.param(
            Reply(403, error_xml("SignatureDoesNotMatch", "The request signature we calculated")),
            "HTTP 403 SignatureDoesNotMatch: The request signature we calculated",
            id="sts",
        ),
        pytest.param(
            Reply(
                403,
                error_xml("InvalidClientTokenId", "invalid", moto_style=True),
                "text/html; charset=utf-8",
            ),
            "HTTP 403 InvalidClientTokenId",
            id="moto html",
        ),
        pytest.param(
            Reply(400, error_xml("ExpiredToken", "The security token included is expired")),
            "HTTP 400 ExpiredToken",
            id="expired",
        ),
        pytest.param(Reply(403, b"Forbidden", "text/plain"), "HTTP 403 unknown error", id="bare"),
        pytest.param(Reply(403, BILLION_LAUGHS), "HTTP 403 unknown error", id="hostile error"),
    ],
)
async def test_sts_rejections_are_denials(stub_sts: StubSts, reply: Reply, fragment: str) -> None:
    stub_sts.enqueue(reply)
    with pytest.raises(AuthenticationDenied) as caught:
        await call(stub_sts.url)
    assert fragment in caught.value.reason
    assert stub_sts.request_count == 1


async def test_denial_reason_never_echoes_token_or_signature(stub_sts: StubSts) -> None:
    vetted = vetted_for(stub_sts.url)
    token = FAKE_CREDENTIALS.session_token
    assert token is not None
    message = f"canonical string had x-amz-security-token:{token} and {vetted.signature}"
    stub_sts.enqueue(Reply(403, error_xml("SignatureDoesNotMatch", message)))
    async with create_sts_http_client(2.0) as http:
        with pytest.raises(AuthenticationDenied) as caught:
            await StsClient(http, timeout=2.0).get_caller_identity(vetted)
    assert token not in caught.value.reason
    assert vetted.signature not in caught.value.reason
    assert "<redacted>" in caught.value.reason


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StsClient(create_sts_http_client(1.0), timeout=0)


async def test_one_client_sends_each_request_to_its_own_endpoint(stub_sts: StubSts) -> None:
    """Parsed endpoint URLs are kept per client: two endpoints must never be confused."""
    with StubSts() as other:
        async with create_sts_http_client(2.0) as http:
            client = StsClient(http, timeout=2.0)
            for url in (stub_sts.url, other.url, stub_sts.url):
                assert await client.get_caller_identity(vetted_for(url)) == EXPECTED
        assert len(stub_sts.requests) == 2
        assert len(other.requests) == 1


def test_the_parsed_urls_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sts_client_module, "_MAX_CACHED_URLS", 4)
    client = StsClient(create_sts_http_client(1.0), timeout=1.0)
    for port in range(10000, 10010):
        assert str(client._url(f"https://127.0.0.1:{port}", "/")) == f"https://127.0.0.1:{port}/"
    assert len(client._urls) == 4


def sts_seconds(outcome: str) -> tuple[float, float]:
    """(count, sum) of the STS round-trip histogram for ``outcome``, as /metrics shows it."""
    samples = {
        sample.name: sample.value
        for metric in sts_client_module.STS_LATENCY.collect()
        for sample in metric.samples
        if sample.labels.get("outcome") == outcome
    }
    return (
        samples.get("strongroom_sts_request_seconds_count", 0.0),
        samples.get("strongroom_sts_request_seconds_sum", 0.0),
    )


async def test_round_trips_are_timed_per_attempt_by_outcome(stub_sts: StubSts) -> None:
    answered, failed = sts_seconds("answered"), sts_seconds("failed")
    # A reset connection, then an answer after 0.2 s: two attempts, one of each outcome.
    stub_sts.enqueue(Reset(), Reply(200, identity_xml(), delay=0.2))
    await call(stub_sts.url)
    now_answered, now_failed = sts_seconds("answered"), sts_seconds("failed")
    assert now_failed[0] == failed[0] + 1  # the reset connection
    assert now_answered[0] == answered[0] + 1
    assert now_answered[1] - answered[1] >= 0.2  # the answer's delay is in its round trip


async def test_a_timed_out_round_trip_is_timed_as_failed(stub_sts: StubSts) -> None:
    count, total = sts_seconds("failed")
    stub_sts.enqueue(Reply(200, identity_xml(), delay=5.0))
    with pytest.raises(UpstreamUnavailableError):
        await call(stub_sts.url, budget=0.5)
    now_count, now_total = sts_seconds("failed")
    assert now_count == count + 1
    assert 0.4 < now_total - total < 1.5  # cut off by the budget, and still counted
