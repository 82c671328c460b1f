"""STS endpoint URLs: parsing, normalisation and the allowlist of SPEC section 3.

An endpoint is always handled in its normal form ``scheme://host[:port]``: scheme and host in
lower case, the default port (443 for https, 80 for http) left out, no trailing slash. Two
spellings of one endpoint therefore compare equal, and a spelling that could mean two hosts
(userinfo, backslashes, embedded whitespace that :func:`urllib.parse.urlsplit` silently strips)
is refused outright.

Raises :class:`~strongroom.errors.InvalidRequestError` for anything that is not such a URL.

``STRONGROOM_STS_CONNECT_TO`` (:func:`parse_connect_to`) changes where a replay *connects*, never
which endpoint it is for: see :func:`connection_origin`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from strongroom.errors import ConfigurationError, InvalidRequestError

MAX_URL_LENGTH = 2048
GLOBAL_STS_ENDPOINT = "https://sts.amazonaws.com"
# The global endpoint only accepts signatures scoped to us-east-1.
GLOBAL_STS_REGION = "us-east-1"

_DEFAULT_PORTS = {"https": 443, "http": 80}
# Visible ASCII only, and no backslash: urlsplit drops tabs and newlines and some parsers treat
# '\' as '/', so such a URL could name one host to us and another to the HTTP stack.
_URL_CHARACTERS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Regions as AWS names them: us-east-1, eu-central-2, us-gov-west-1, cn-north-1.
REGION_PATTERN = r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]{1,2}"
_AWS_STS_ENDPOINT = re.compile(
    rf"https://sts\.(?:(?P<region>(?!cn-){REGION_PATTERN})\.amazonaws\.com"
    rf"|(?P<cn_region>cn-[a-z]+-[0-9]{{1,2}})\.amazonaws\.com\.cn)"
)
STS_URL_RULE = (
    "sts_url must be https://sts.amazonaws.com, https://sts.<region>.amazonaws.com or "
    "https://sts.<region>.amazonaws.com.cn (no credentials, path, query or fragment), or exactly "
    "one of the endpoints listed in STRONGROOM_STS_EXTRA_ENDPOINTS"
)


@dataclass(frozen=True)
class SplitUrl:
    """The parts of an absolute http(s) URL that matter for where a request goes."""

    scheme: str
    host: str  # lower case; an IPv6 literal keeps its brackets
    port: int | None  # None when it is the scheme's default port or absent
    path: str
    has_userinfo: bool
    has_query: bool
    has_fragment: bool

    @property
    def netloc(self) -> str:
        """``host[:port]``, the value of the Host header for this URL."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The normal form ``scheme://host[:port]``."""
        return f"{self.scheme}://{self.netloc}"


def split_url(unverified: str) -> SplitUrl:
    """Parse an absolute http(s) URL strictly; raise InvalidRequestError if it is not one."""
    if not isinstance(unverified, str):
        raise InvalidRequestError("the URL must be a string")
    if len(unverified) > MAX_URL_LENGTH:
        raise InvalidRequestError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARACTERS.fullmatch(unverified):
        raise InvalidRequestError(
            "the URL may contain only visible ASCII characters (no spaces, control characters "
            "or backslashes)"
        )
    try:
        parts = urlsplit(unverified)
        explicit_port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"the URL cannot be parsed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidRequestError("the URL must start with https:// (or http:// for a test STS)")
    has_userinfo = "@" in parts.netloc
    host = _normal_host(parts.hostname or "")
    if explicit_port == 0:
        raise InvalidRequestError("the URL's port must be between 1 and 65535")
    port = None if explicit_port in (None, _DEFAULT_PORTS[scheme]) else explicit_port
    return SplitUrl(
        scheme=scheme,
        host=host,
        port=port,
        path=parts.path,
        has_userinfo=has_userinfo,
        has_query="?" in unverified,
        has_fragment="#" in unverified,
    )


def _normal_host(hostname: str) -> str:
    if not hostname:
        raise InvalidRequestError("the URL has no host")
    if ":" in hostname:
        if "%" in hostname:
            raise InvalidRequestError("the URL's host must not carry an IPv6 zone")
        try:
            address = ipaddress.IPv6Address(hostname)
        except ValueError as exc:
            raise InvalidRequestError("the URL's host is not a valid IPv6 address") from exc
        return f"[{address.compressed}]"
    if not _HOSTNAME.fullmatch(hostname):
        raise InvalidRequestError("the URL's host is not a valid DNS name or IPv4 address")
    return hostname


def normalize_endpoint(unverified: str) -> str:
    """Return the normal form ``scheme://host[:port]`` of an endpoint URL.

    Accepts an optional ``/`` path and nothing else after the authority: no userinfo (it makes
    the host ambiguous to readers), no query, no fragment. Raises InvalidRequestError.
    """
    parts = split_url(unverified)
    if parts.has_userinfo:
        raise InvalidRequestError("an STS endpoint URL must not contain credentials (user@)")
    if parts.path not in ("", "/") or parts.has_query or parts.has_fragment:
        raise InvalidRequestError("an STS endpoint URL has no path, query or fragment")
    return parts.origin


def aws_sts_region(endpoint: str) -> str | None:
    """The signing region an AWS STS endpoint (in normal form) requires; None for other hosts."""
    if endpoint == GLOBAL_STS_ENDPOINT:
        return GLOBAL_STS_REGION
    match = _AWS_STS_ENDPOINT.fullmatch(endpoint)
    if match is None:
        return None
    return match.group("region") or match.group("cn_region")


def _extra_endpoint_forms(extra_endpoints: Iterable[str]) -> set[str]:
    forms = set()
    for entry in extra_endpoints:
        try:
            forms.add(normalize_endpoint(entry))
        except InvalidRequestError:
            # A broken entry can match nothing (fail closed); parse_extra_endpoints reports it
            # at start-up.
            continue
    return forms


def validate_sts_url(unverified: str, extra_endpoints: Sequence[str]) -> str:
    """Return the normal form of an auth method's ``sts_url`` if it is allowed, else raise.

    Allowed: the global or a regional AWS STS endpoint over https, or exactly (after
    normalisation) one entry of ``extra_endpoints`` (``STRONGROOM_STS_EXTRA_ENDPOINTS``, which
    may use http:// for a local test STS). Every login replays a client-signed request to this
    URL, so an arbitrary value would let whoever edits an auth method point the server at an
    internal host (server-side request forgery). Raises InvalidRequestError naming the rule.
    """
    try:
        endpoint = normalize_endpoint(unverified)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{exc.message}; {STS_URL_RULE}") from exc
    if aws_sts_region(endpoint) is not None:
        return endpoint
    if endpoint in _extra_endpoint_forms(extra_endpoints):
        return endpoint
    raise InvalidRequestError(f"{endpoint} is not an allowed STS endpoint; {STS_URL_RULE}")


def parse_extra_endpoints(values: Iterable[str]) -> tuple[str, ...]:
    """Normalise ``STRONGROOM_STS_EXTRA_ENDPOINTS`` at start-up; raise ConfigurationError."""
    forms: list[str] = []
    for value in values:
        try:
            form = normalize_endpoint(value)
        except InvalidRequestError as exc:
            raise ConfigurationError(
                f"STRONGROOM_STS_EXTRA_ENDPOINTS entry {value!r}: {exc.message}"
            ) from exc
        if form not in forms:
            forms.append(form)
    return tuple(forms)


CONNECT_TO_RULE = (
    "STRONGROOM_STS_CONNECT_TO is a comma list of host=URL, e.g. "
    "sts.us-east-1.amazonaws.com=https://vpce-0123-abcd.sts.us-east-1.vpce.amazonaws.com"
)


def parse_connect_to(values: Iterable[str]) -> dict[str, str]:
    """``STRONGROOM_STS_CONNECT_TO`` at start-up: signed host -> origin to connect to.

    Each entry is ``host=URL``: a replay of a request signed for ``host`` (an STS endpoint's
    host name, e.g. ``sts.amazonaws.com``) is sent to URL's address, with its signed Host header
    unchanged (an STS VPC endpoint without private DNS, or a test STS). URL is an endpoint in
    the sense of :func:`normalize_endpoint`; with https:// its certificate is verified against
    URL's own host, the name the operator chose to trust for that address. Raises
    ConfigurationError naming the entry.
    """
    routes: dict[str, str] = {}
    for value in values:
        host, equals, url = value.partition("=")
        host = host.strip().lower()
        try:
            if not equals or not host or not url.strip():
                raise InvalidRequestError("expected host=URL")
            if "/" in host or ":" in host or "@" in host:
                raise InvalidRequestError("before = comes a bare host name (no scheme or port)")
            host = _normal_host(host)
            origin = normalize_endpoint(url.strip())
        except InvalidRequestError as exc:
            raise ConfigurationError(
                f"STRONGROOM_STS_CONNECT_TO entry {value!r}: {exc.message}; {CONNECT_TO_RULE}"
            ) from exc
        if host in routes:
            raise ConfigurationError(f"STRONGROOM_STS_CONNECT_TO names {host} twice")
        routes[host] = origin
    return routes


def connection_origin(endpoint: str, connect_to: Mapping[str, str]) -> str:
    """Where a replay for ``endpoint`` (normal form) connects: ``connect_to``'s origin for the
    endpoint's host, else the endpoint itself.

    Only the connection moves. The endpoint the request is for, which check 1 compares with the
    signed URL and whose host the replay's Host header names, stays the auth method's sts_url.
    """
    if not connect_to:
        return endpoint
    return connect_to.get(split_url(endpoint).host, endpoint)
