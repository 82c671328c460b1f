"""The only I/O of AWS IAM login: replaying a vetted GetCallerIdentity request to STS.

    StsClient.get_caller_identity(vetted)
      POST <vetted.endpoint>/ with exactly vetted.headers and vetted.body
      ├── 200 + XML identity                    -> CallerIdentity
      ├── 400/401/403 (SignatureDoesNotMatch,    -> AuthenticationDenied("STS rejected … <Code>")
      │   InvalidClientTokenId, ExpiredToken…)
      ├── 400 Throttling and the like           -> UpstreamUnavailableError
      ├── connection failure or 5xx             -> one retry, then UpstreamUnavailableError
      ├── 3xx (never followed), other statuses,
      │   unusable 200, oversized answer         -> UpstreamUnavailableError
      └── the whole call, retry included, longer
          than ``timeout`` seconds              -> UpstreamUnavailableError

The HTTP client is injected (:func:`create_sts_http_client` builds the production one, and tests
pass a transport), so nothing here knows where STS really is. ``connect_to`` (the parsed
``STRONGROOM_STS_CONNECT_TO``) sends a replay for an endpoint's host to another address: the
URL is the connect-to origin, so TCP, TLS server name and certificate check are that origin's,
while the Host header stays the signed one (vetting put it first in ``vetted.headers``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping

import httpx
from prometheus_client import Histogram

from strongroom.auth.aws_iam.endpoint import connection_origin
from strongroom.auth.aws_iam.sts_network import create_sts_transport
from strongroom.auth.aws_iam.sts_response import (
    MAX_RESPONSE_BYTES,
    CallerIdentity,
    parse_get_caller_identity_response,
    parse_sts_error,
)
from strongroom.auth.aws_iam.vetting import VettedStsRequest
from strongroom.errors import AuthenticationDenied, UpstreamUnavailableError

STS_LATENCY = Histogram(
    "strongroom_sts_request_seconds",
    "Round trips to STS, from sending the replayed request to its whole answer; outcome is "
    "answered (an HTTP answer, read whole) or failed (a connection error, a timeout, or an "
    "answer refused as oversized or compressed)",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# STS reports these as 400 but they say nothing about the client's credentials.
_UPSTREAM_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
    }
)
_DENIAL_STATUSES = frozenset({400, 401, 403})
STS_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=32, keepalive_expiry=30)
_MAX_MESSAGE_CHARS = 200
# Parsed URLs kept per client: one per auth method's sts_url (set by an admin), so few; past
# this many, URLs are parsed on each call rather than kept.
_MAX_CACHED_URLS = 256
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


class _ResponseTooLargeError(Exception):
    pass


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def create_sts_http_client(
    timeout: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The pooled HTTP client for STS: no redirects, no proxies or certificates from the env.

    ``trust_env=False`` keeps ``HTTPS_PROXY`` and friends from silently routing signed
    credentials through a proxy. Its transport is httpx's on plain asyncio sockets
    (sts_network.py); pass ``transport`` to point it elsewhere in tests.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        transport=transport or create_sts_transport(limits=STS_LIMITS),
    )


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _UNPRINTABLE.sub(" ", text)[:_MAX_MESSAGE_CHARS]


class StsClient:
    """Sends vetted requests to their STS endpoint and interprets the answer."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        retry_delay: float = 0.05,
        connect_to: Mapping[str, str] | None = None,
    ) -> None:
        """``connect_to``: signed host -> origin to connect to instead (parse_connect_to)."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._http = http
        self._connect_to = dict(connect_to or {})
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self._urls: dict[str, httpx.URL] = {}

    async def aclose(self) -> None:
        """Close the HTTP client (on the event loop that used it)."""
        await self._http.aclose()

    async def get_caller_identity(self, vetted: VettedStsRequest) -> CallerIdentity:
        """Replay ``vetted`` and return who signed it.

        Raises AuthenticationDenied when STS rejects the signature or credentials, and
        UpstreamUnavailableError when STS cannot give an answer within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._call_with_retry(vetted)
        except TimeoutError as exc:
            raise UpstreamUnavailableError(
                reason=f"STS at {self._where(vetted)} did not answer within {self._timeout} s"
            ) from exc

    async def _call_with_retry(self, vetted: VettedStsRequest) -> CallerIdentity:
        try:
            return await self._attempt(vetted)
        except _Retryable as first:
            await asyncio.sleep(self._retry_delay)
            try:
                return await self._attempt(vetted)
            except _Retryable as second:
                raise UpstreamUnavailableError(
                    reason=f"STS at {self._where(vetted)} failed twice: {first.reason}; then "
                    f"{second.reason}"
                ) from second

    async def _attempt(self, vetted: VettedStsRequest) -> CallerIdentity:
        started = time.perf_counter()
        outcome = "failed"
        try:
            status, content_type, body = await self._send(vetted)
            outcome = "answered"
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from exc
        except httpx.TimeoutException as exc:
            raise TimeoutError from exc
        except _ResponseTooLargeError as exc:
            raise UpstreamUnavailableError(
                reason=f"STS at {self._where(vetted)} sent an answer over "
                f"{MAX_RESPONSE_BYTES} bytes"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(
                reason=f"request to STS at {self._where(vetted)} failed ({type(exc).__name__})"
            ) from exc
        finally:
            # Also when the whole call's timeout cancels the attempt: a slow STS shows here.
            STS_LATENCY.labels(outcome).observe(time.perf_counter() - started)
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        return self._interpret(vetted, status, content_type, body)

    def _where(self, vetted: VettedStsRequest) -> str:
        """The endpoint, and the address it was reached at if connect_to moved it (reasons)."""
        origin = connection_origin(vetted.endpoint, self._connect_to)
        if origin == vetted.endpoint:
            return vetted.endpoint
        return f"{vetted.endpoint} (connecting to {origin})"

    def _url(self, endpoint: str, path: str) -> httpx.URL:
        """Where to send ``endpoint + path`` (moved by ``connect_to``), parsed once: httpx's
        parsing of a URL string (IDNA, IP address checks) costs as much as building the rest
        of the request."""
        key = endpoint + path
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(connection_origin(endpoint, self._connect_to) + path)
            if len(self._urls) < _MAX_CACHED_URLS:
                self._urls[key] = url
        return url

    async def _send(self, vetted: VettedStsRequest) -> tuple[int, str | None, bytes]:
        request = httpx.Request(
            "POST",
            self._url(vetted.endpoint, vetted.path),
            headers=list(vetted.headers),
            content=vetted.body,
            extensions={"timeout": self._timeouts},
        )
        # send() (not post()) so that the client's default headers are not added: the request
        # carries exactly what was signed plus nothing but Content-Length if it was absent.
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                # Compressed answers are refused rather than inflated (decompression bomb); we
                # never send Accept-Encoding, so a real STS never compresses.
                raise UpstreamUnavailableError(
                    reason=f"STS at {self._where(vetted)} sent a compressed answer"
                )
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _ResponseTooLargeError
            return response.status_code, response.headers.get("content-type"), bytes(body)
        finally:
            await response.aclose()

    def _interpret(
        self, vetted: VettedStsRequest, status: int, content_type: str | None, body: bytes
    ) -> CallerIdentity:
        if status == 200:
            return parse_get_caller_identity_response(body, content_type)
        if 300 <= status < 400:
            # A redirect is never followed: it could lead the signed request anywhere.
            raise UpstreamUnavailableError(
                reason=f"STS at {self._where(vetted)} answered with a redirect (HTTP {status}); "
                "redirects are not followed"
            )
        if status in _DENIAL_STATUSES:
            error = parse_sts_error(body)
            if error.code in _UPSTREAM_ERROR_CODES:
                raise UpstreamUnavailableError(
                    reason=f"STS at {self._where(vetted)} is refusing requests ({error.code})"
                )
            token = dict(vetted.headers).get("X-Amz-Security-Token", "")
            message = _redact(error.message or "", (vetted.signature, token))
            raise AuthenticationDenied(
                f"STS rejected the signed request: HTTP {status} {error.code or 'unknown error'}"
                + (f": {message}" if message else "")
            )
        raise UpstreamUnavailableError(
            reason=f"STS at {self._where(vetted)} answered with unexpected HTTP {status}"
        )
