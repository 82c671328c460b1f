"""Vetting a client-signed STS request before the server replays it (SPEC section 3, checks 1-7).

The lesson of CVE-2020-16250 is to *rebuild* the outgoing request rather than validate what the
client sends and pass it on. :func:`vet_sts_request` therefore returns a new
:class:`VettedStsRequest` that names the configured endpoint, the fixed path ``/``, the signed
body bytes and only allowlisted headers under their canonical names. Nothing else the client
sent survives.

Checks run in this order; each is a small function with a comment naming what it blocks.

    7  sizes (first: bound the input before parsing it)    InvalidRequestError
    1  method is POST                                      AuthenticationDenied
    1  URL parses                                          InvalidRequestError
    1  URL: same scheme/host/port as sts_url, path "/",     AuthenticationDenied
       no query, fragment or userinfo
    2  body is exactly Action=GetCallerIdentity&Version=… AuthenticationDenied
    3  header names and values are well-formed HTTP        InvalidRequestError
    3  header allowlist, no header twice                   AuthenticationDenied
    3  Authorization present and parses as SigV4           InvalidRequestError
    3  SignedHeaders has host and x-amz-date, and names    AuthenticationDenied
       only headers that are present (so a missing
       X-Amz-Date is refused here)
    3  credential-scope region fits an AWS sts_url          AuthenticationDenied
    3  Content-Length is a number                          InvalidRequestError
    3  Content-Length equals the body length               AuthenticationDenied
    3  Host (if sent) equals the URL's host                 AuthenticationDenied
    4  X-Amz-Date is yyyymmddTHHMMSSZ                      InvalidRequestError
    4  X-Amz-Date within max_skew of now, both ways        AuthenticationDenied
    4  credential-scope date is X-Amz-Date's day           AuthenticationDenied
    3  X-Strongroom-Login-Nonce (if sent) is 16-64         InvalidRequestError
       URL-safe characters
    3  X-Strongroom-Login-Nonce (if sent) is signed        AuthenticationDenied
    5  X-Strongroom-Server-ID and X-Vault-AWS-IAM-Server-ID AuthenticationDenied
       agree when both are sent; with SERVER_ID set, one
       is present, and each sent is equal and signed
    6  single use: the caller's replay cache, keyed by ``VettedStsRequest.signature``

The rule: a request we cannot read is malformed (400 InvalidRequest); a request we can read but
that fails a security rule is a failed login (401, with the precise ``reason`` for the audit log).
Reasons never contain the signature or the security token.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from strongroom.auth.aws_iam.endpoint import (
    REGION_PATTERN,
    SplitUrl,
    aws_sts_region,
    normalize_endpoint,
    split_url,
)
from strongroom.auth.aws_iam.request import UnverifiedStsRequest
from strongroom.errors import AuthenticationDenied, InvalidRequestError

DEFAULT_MAX_SKEW = timedelta(minutes=15)
MAX_HEADERS = 16
MAX_HEADER_NAME_CHARS = 64
MAX_HEADER_VALUE_CHARS = 4 * 1024
MAX_BODY_BYTES = 1024
MAX_METHOD_CHARS = 16

SERVER_ID_HEADER = "X-Strongroom-Server-ID"
# Vault's and OpenBao's name for the same header (hvac's header_value, the vault CLI):
# accepted as the same header, so their clients log in unchanged.
VAULT_SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"
SERVER_ID_HEADERS = (SERVER_ID_HEADER, VAULT_SERVER_ID_HEADER)
# SigV4 dates have one-second resolution: two processes of one role signing in the same second
# would sign byte-identical requests, and the replay cache would refuse all but the first.
# A fresh random nonce, signed, makes every login's signature its own.
LOGIN_NONCE_HEADER = "X-Strongroom-Login-Nonce"
# lower-case name -> canonical name, in the order the rebuilt request carries them.
ALLOWED_HEADERS: dict[str, str] = {
    name.lower(): name
    for name in (
        "Host",
        "Authorization",
        "Content-Type",
        "Content-Length",
        "User-Agent",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
        SERVER_ID_HEADER,
        VAULT_SERVER_ID_HEADER,
        LOGIN_NONCE_HEADER,
    )
}
_REQUIRED_SIGNED_HEADERS = ("host", "x-amz-date")
_BODY_FIELDS = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,10}")
_LOGIN_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# botocore, hvac and the Go SDK write ", " between the parts; akeyless-cloud-id writes ",  ".
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 "
    r"Credential=(?P<access_key_id>[A-Z0-9]{16,128})/(?P<date>[0-9]{8})"
    rf"/(?P<region>{REGION_PATTERN})/sts/aws4_request,"
    r" {1,2}SignedHeaders=(?P<signed_headers>[a-z0-9-]{1,64}(?:;[a-z0-9-]{1,64}){0,31}),"
    r" {1,2}Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class SigV4Authorization:
    """The parts of an ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key_id: str
    scope_date: str  # yyyymmdd
    region: str
    signed_headers: tuple[str, ...]
    signature: str

    def __repr__(self) -> str:
        # The signature is a bearer credential for its 15 minutes; keep it out of logs.
        return (
            f"SigV4Authorization(access_key_id={self.access_key_id!r}, "
            f"scope_date={self.scope_date!r}, region={self.region!r}, "
            f"signed_headers={self.signed_headers!r}, signature=<redacted>)"
        )


@dataclass(frozen=True)
class VettedStsRequest:
    """The request the server will send: rebuilt from checked parts, never passed through."""

    endpoint: str  # the auth method's sts_url in normal form; the only place it is ever sent
    path: str  # always "/"
    body: bytes  # exactly the bytes the client signed
    headers: tuple[tuple[str, str], ...]  # allowlisted, canonical names, Host first
    signature: str  # hex, from Authorization: the replay-cache key
    amz_date: datetime
    region: str  # from the credential scope
    access_key_id: str
    usable_until: datetime  # amz_date + max_skew: how long the replay cache must remember it

    def __repr__(self) -> str:
        # Headers carry the signature and the security token: never print them.
        return (
            f"VettedStsRequest(endpoint={self.endpoint!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, amz_date={self.amz_date.isoformat()!r})"
        )


def parse_authorization(unverified: str) -> SigV4Authorization:
    """Parse a SigV4 Authorization value for service ``sts``; raise InvalidRequestError."""
    match = _AUTHORIZATION.fullmatch(unverified)
    if match is None:
        raise InvalidRequestError(
            "the Authorization header is not 'AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/"
            "<region>/sts/aws4_request, SignedHeaders=<a;b;c>, Signature=<64 hex>'"
        )
    return SigV4Authorization(
        access_key_id=match["access_key_id"],
        scope_date=match["date"],
        region=match["region"],
        signed_headers=tuple(match["signed_headers"].split(";")),
        signature=match["signature"],
    )


def check_sizes(unverified: UnverifiedStsRequest) -> None:
    """(7) Bound every part before parsing it: resource exhaustion. Raises InvalidRequestError."""
    if len(unverified.method) > MAX_METHOD_CHARS:
        raise InvalidRequestError("the signed request's method is too long")
    if len(unverified.body) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"the signed request's body is over {MAX_BODY_BYTES} bytes")
    if len(unverified.headers) > MAX_HEADERS:
        raise InvalidRequestError(f"the signed request has more than {MAX_HEADERS} headers")
    for name, value in unverified.headers:
        if len(name) > MAX_HEADER_NAME_CHARS:
            raise InvalidRequestError(
                f"a header name is longer than {MAX_HEADER_NAME_CHARS} characters"
            )
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise InvalidRequestError(
                f"the value of header {name!r} is longer than {MAX_HEADER_VALUE_CHARS} characters"
            )


def check_method(method: str) -> None:
    """(1) Only POST: a GET would move the action into a query string we never see checked."""
    if method != "POST":
        raise AuthenticationDenied(
            f"the signed request's method is {method[:MAX_METHOD_CHARS]!r}; only 'POST' is accepted"
        )


def check_url(unverified_url: str, endpoint: str) -> SplitUrl:
    """(1) The client's URL must name exactly the configured endpoint, with path "/".

    Server-side request forgery (CVE-2020-16250): the request is only ever sent to ``endpoint``,
    but a URL naming another host means the signature was made for that host, and a path or
    query would make the signature cover a different action than the body shows. Raises
    InvalidRequestError if the URL does not parse, AuthenticationDenied otherwise.
    """
    url = split_url(unverified_url)
    if url.has_userinfo:
        raise AuthenticationDenied("the signed request's URL contains credentials (user@host)")
    if url.origin != endpoint:
        raise AuthenticationDenied(
            f"the signed request is for {url.origin[:200]}, but this auth method's sts_url is "
            f"{endpoint}; requests are only sent to sts_url"
        )
    if url.path not in ("", "/"):
        raise AuthenticationDenied("the signed request's URL path must be '/'")
    if url.has_query:
        raise AuthenticationDenied("the signed request's URL must not have a query string")
    if url.has_fragment:
        raise AuthenticationDenied("the signed request's URL must not have a fragment")
    return url


def check_body(body: bytes) -> None:
    """(2) The body is exactly ``Action=GetCallerIdentity`` and ``Version=2011-06-15``.

    Forged action: a signed AssumeRole, or any action that echoes attacker text, would
    otherwise be replayed with our server's network position and its answer parsed as an
    identity (CVE-2020-16250). Each field once, nothing else.
    """
    try:
        fields = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=True, max_num_fields=4
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuthenticationDenied(
            "the signed request's body is not a form with Action=GetCallerIdentity and "
            "Version=2011-06-15"
        ) from exc
    if len(fields) != len(_BODY_FIELDS) or dict(fields) != _BODY_FIELDS:
        raise AuthenticationDenied(
            "the signed request's body must be exactly Action=GetCallerIdentity and "
            "Version=2011-06-15"
        )


def index_headers(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """(3) Map lower-case name -> value for an allowlisted set of distinct headers.

    Raises InvalidRequestError for a name that is not an HTTP token or a value with control
    or non-ASCII characters (header injection into the replayed request). Raises
    AuthenticationDenied for a header off the allowlist (smuggling extra X-Amz-* parameters or
    hop-by-hop headers into the request) or a header sent twice (two parsers could pick
    different copies: the one we checked and the one STS reads).
    """
    indexed: dict[str, str] = {}
    for name, value in pairs:
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidRequestError("a header name is not a valid HTTP token")
        if not _HEADER_VALUE.fullmatch(value):
            raise InvalidRequestError(
                f"the value of header {name!r} contains control or non-ASCII characters"
            )
        lower = name.lower()
        if lower not in ALLOWED_HEADERS:
            raise AuthenticationDenied(
                f"header {name!r} is not allowed in the signed request; allowed: "
                + ", ".join(ALLOWED_HEADERS.values())
            )
        if lower in indexed:
            raise AuthenticationDenied(f"header {ALLOWED_HEADERS[lower]} appears more than once")
        # Surrounding whitespace is not part of a field value (RFC 9110) nor of what SigV4 signs.
        indexed[lower] = value.strip(" \t")
    return indexed


def require_authorization(headers: dict[str, str]) -> SigV4Authorization:
    """(3) The Authorization header is present and is SigV4 for sts; raise InvalidRequestError."""
    value = headers.get("authorization")
    if value is None:
        raise InvalidRequestError("the signed request has no Authorization header")
    return parse_authorization(value)


def check_signed_headers(auth: SigV4Authorization, present: set[str]) -> None:
    """(3) SignedHeaders covers host and x-amz-date, and only headers we will send.

    Without host in the signature the request could be aimed at any endpoint; without
    x-amz-date its freshness (check 4) would be the client's unsigned say-so. A signed header
    we would not send can only make STS reject the request, so refuse it here.
    """
    for required in _REQUIRED_SIGNED_HEADERS:
        if required not in auth.signed_headers:
            raise AuthenticationDenied(f"SignedHeaders does not include {required}")
    for name in auth.signed_headers:
        if name not in present:
            raise AuthenticationDenied(f"SignedHeaders names {name!r}, which is not in the request")


def check_scope_region(auth: SigV4Authorization, endpoint: str) -> None:
    """(3) An AWS endpoint only accepts signatures scoped to its own region.

    Not an attack but the commonest misconfiguration (vault#7397): STS would answer
    SignatureDoesNotMatch; refusing here names the cause and spares the outbound call.
    Extra (test) endpoints accept any region.
    """
    expected = aws_sts_region(endpoint)
    if expected is not None and auth.region != expected:
        raise AuthenticationDenied(
            f"the request is signed for region {auth.region}, but {endpoint} accepts only "
            f"signatures for {expected}"
        )


def check_content_length(headers: dict[str, str], body: bytes) -> None:
    """(3) Content-Length, if sent, equals the body length.

    A mismatch would desynchronise the pooled connection to STS (request smuggling): STS would
    read a different body than the one we checked, or take the rest as a second request.
    """
    value = headers.get("content-length")
    if value is None:
        return
    if not _CONTENT_LENGTH.fullmatch(value):
        raise InvalidRequestError("the Content-Length header is not a number")
    if int(value) != len(body):
        raise AuthenticationDenied(
            f"Content-Length is {int(value)} but the body has {len(body)} bytes"
        )


def check_host(headers: dict[str, str], url: SplitUrl) -> None:
    """(3) A Host header, if sent, names the URL's host (hvac sends one, akeyless does not).

    Virtual-host confusion: the replay carries the host the URL names, so a different signed
    Host means the client signed for another service on the same address.
    """
    value = headers.get("host")
    if value is not None and value.lower() != url.netloc:
        raise AuthenticationDenied(
            f"the Host header names {value[:200]!r}, but the URL's host is {url.netloc!r}"
        )


def require_amz_date(headers: dict[str, str]) -> datetime:
    """(4) X-Amz-Date is present and ``yyyymmddTHHMMSSZ``; raise InvalidRequestError."""
    value = headers.get("x-amz-date")
    if value is None:
        raise InvalidRequestError("the signed request has no X-Amz-Date header")
    if not _AMZ_DATE.fullmatch(value):
        raise InvalidRequestError("X-Amz-Date is not in the form yyyymmddTHHMMSSZ")
    # Fields by position (the pattern fixed them): strptime would cost ten times as much and
    # load its locale tables on a process's first login.
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise InvalidRequestError("X-Amz-Date is not a valid date and time") from exc


def check_freshness(amz_date: datetime, now: datetime, max_skew: timedelta) -> None:
    """(4) The signature is at most ``max_skew`` old and at most ``max_skew`` in the future.

    Stale-signature replay: a captured request stays a bearer credential while STS accepts it;
    moto and some STS-compatible endpoints do not check the date at all. Future-dated requests
    would stretch that window.
    """
    if amz_date < now - max_skew:
        raise AuthenticationDenied(
            f"X-Amz-Date {amz_date.isoformat()} is more than {max_skew} before the server's "
            f"clock ({now.isoformat()})"
        )
    if amz_date > now + max_skew:
        raise AuthenticationDenied(
            f"X-Amz-Date {amz_date.isoformat()} is more than {max_skew} after the server's "
            f"clock ({now.isoformat()})"
        )


def check_scope_date(auth: SigV4Authorization, amz_date: datetime) -> None:
    """(4) The credential scope's date is X-Amz-Date's day.

    Otherwise the freshness we checked would not be the date the signing key was derived for.
    """
    if auth.scope_date != amz_date.strftime("%Y%m%d"):
        raise AuthenticationDenied(
            f"the credential scope date {auth.scope_date} is not the day of X-Amz-Date"
        )


def check_login_nonce(headers: dict[str, str], auth: SigV4Authorization) -> None:
    """(3) A login nonce, if sent, is 16 to 64 URL-safe characters and is signed.

    It exists to make same-second logins of one identity sign different requests (see
    LOGIN_NONCE_HEADER); an unsigned one would change nothing STS checks, so a client that
    sends one unsigned is broken, and is told so rather than failing at random later.
    Raises InvalidRequestError for a malformed value, AuthenticationDenied if it is unsigned.
    """
    value = headers.get(LOGIN_NONCE_HEADER.lower())
    if value is None:
        return
    if not _LOGIN_NONCE.fullmatch(value):
        raise InvalidRequestError(
            f"{LOGIN_NONCE_HEADER} must be 16 to 64 URL-safe characters (A-Z, a-z, 0-9, - and _)"
        )
    if LOGIN_NONCE_HEADER.lower() not in auth.signed_headers:
        raise AuthenticationDenied(f"{LOGIN_NONCE_HEADER} is not listed in SignedHeaders")


def check_server_id(
    headers: dict[str, str], auth: SigV4Authorization, server_id: str | None
) -> None:
    """(5) With SERVER_ID set, the request names this server, and signs that name.

    Audience binding: a login signed for another server (a rogue or merely different service
    that accepts the same scheme) cannot be replayed here, and an unsigned header could simply
    be added by whoever captured the request. ``X-Vault-AWS-IAM-Server-ID`` is the same
    header under Vault's name. Both names at once must agree, SERVER_ID set or not: two
    audiences in one request leave which one it was signed for to whichever reader looks
    (parser differential); with SERVER_ID set, every one sent must be equal and signed.
    """
    sent = {name: headers[name.lower()] for name in SERVER_ID_HEADERS if name.lower() in headers}
    if len(set(sent.values())) > 1:
        raise AuthenticationDenied(
            f"{SERVER_ID_HEADER} and {VAULT_SERVER_ID_HEADER} name different servers"
        )
    if server_id is None:
        return
    if not sent:
        raise AuthenticationDenied(
            f"the signed request has no {SERVER_ID_HEADER} header (or {VAULT_SERVER_ID_HEADER});"
            " this server requires one"
        )
    for name, value in sent.items():
        if not hmac.compare_digest(value.encode(), server_id.encode()):
            raise AuthenticationDenied(
                f"{name} names another server: the request was signed for a different audience"
            )
        if name.lower() not in auth.signed_headers:
            raise AuthenticationDenied(f"{name} is not listed in SignedHeaders")


def rebuild_headers(headers: dict[str, str], url: SplitUrl) -> tuple[tuple[str, str], ...]:
    """The headers to send: Host from the URL, then the allowlisted ones, canonical names."""
    rebuilt = [("Host", url.netloc)]
    for lower, canonical in ALLOWED_HEADERS.items():
        if lower != "host" and lower in headers:
            rebuilt.append((canonical, headers[lower]))
    return tuple(rebuilt)


def vet_sts_request(
    unverified: UnverifiedStsRequest,
    *,
    sts_url: str,
    server_id: str | None,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> VettedStsRequest:
    """Check a decoded request against SPEC section 3 and rebuild it for sending.

    ``sts_url`` is the auth method's (already validated) endpoint; ``now`` must be timezone
    aware. Raises InvalidRequestError for a malformed request and AuthenticationDenied for one
    that fails a security check (see the module docstring for which is which). Single use
    (check 6) is the caller's, keyed by the returned ``signature``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    endpoint = normalize_endpoint(sts_url)
    check_sizes(unverified)
    check_method(unverified.method)
    url = check_url(unverified.url, endpoint)
    check_body(unverified.body)
    headers = index_headers(unverified.headers)
    auth = require_authorization(headers)
    check_signed_headers(auth, set(headers) | {"host"})
    check_scope_region(auth, endpoint)
    check_content_length(headers, unverified.body)
    check_host(headers, url)
    amz_date = require_amz_date(headers)
    check_freshness(amz_date, now, max_skew)
    check_scope_date(auth, amz_date)
    check_login_nonce(headers, auth)
    check_server_id(headers, auth, server_id)
    return VettedStsRequest(
        endpoint=endpoint,
        path="/",
        body=unverified.body,
        headers=rebuild_headers(headers, url),
        signature=auth.signature,
        amz_date=amz_date,
        region=auth.region,
        access_key_id=auth.access_key_id,
        usable_until=amz_date + max_skew,
    )
