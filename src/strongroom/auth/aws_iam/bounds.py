"""An aws_iam auth method's bounds, their validators, and matching a login against them. Pure.

Matching (SPEC section 3):

* the account must be listed in ``bound_aws_account_id`` (required; literal, never a glob);
* ROOT, FEDERATED_USER and OTHER principals need their exact ARN in ``bound_arn``: a glob
  written for roles (``arn:aws:iam::123456789012:*``) must not let the account root in;
* every other bound list that is set must match (AND across lists), by any of its entries
  (OR within a list), with :func:`~strongroom.kit.glob.glob_match` (``*`` only);
* a set list whose claim the principal lacks (``bound_role_name`` for an IAM user) fails;
* with ``bound_ips`` set, the source address must fall in one of the networks.

:func:`check_bounds` raises :class:`~strongroom.errors.AuthenticationDenied` with a reason such
as "role name 'other' not in bound_role_name"; the validators raise
:class:`~strongroom.errors.InvalidRequestError` with text fit for an API client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from strongroom.auth.aws_iam.identity import AwsIdentityClaims
from strongroom.errors import AuthenticationDenied, InvalidRequestError
from strongroom.kit.glob import glob_match

MAX_BOUND_GLOB_CHARS = 256
_ACCOUNT_ID = re.compile(r"[0-9]{12}")

IpNetwork = IPv4Network | IPv6Network
IpAddress = IPv4Address | IPv6Address

# bound list attribute -> (claim name, words for the reason)
_GLOB_BOUNDS = (
    ("bound_arn", "arn", "ARN"),
    ("bound_role_name", "role_name", "role name"),
    ("bound_role_id", "role_id", "role ID"),
    ("bound_resource_id", "resource_id", "resource ID"),
    ("bound_user_name", "user_name", "user name"),
    ("bound_user_id", "user_id", "user ID"),
)


def validate_account_id(unverified: str) -> str:
    """Return a 12-digit AWS account ID unchanged; raise InvalidRequestError otherwise."""
    if not isinstance(unverified, str) or not _ACCOUNT_ID.fullmatch(unverified):
        raise InvalidRequestError(
            "an AWS account ID is exactly 12 digits (no wildcards), e.g. 123456789012"
        )
    return unverified


def validate_bound_glob(unverified: str) -> str:
    """Return a bound value (``*`` is the only wildcard) unchanged; raise InvalidRequestError."""
    if not isinstance(unverified, str) or not unverified:
        raise InvalidRequestError("a bound value must be a non-empty string")
    if len(unverified) > MAX_BOUND_GLOB_CHARS:
        raise InvalidRequestError(f"a bound value is at most {MAX_BOUND_GLOB_CHARS} characters")
    if not unverified.isprintable():
        raise InvalidRequestError("a bound value must not contain control characters")
    return unverified


def validate_cidr(unverified: str) -> str:
    """Return the canonical text of a network such as ``10.0.0.0/8``; raise InvalidRequestError.

    Strict: host bits must be zero (``10.0.0.1/8`` is refused, since it usually means the
    author expected something else). A bare address means a single host.
    """
    if not isinstance(unverified, str):
        raise InvalidRequestError("a CIDR must be a string")
    try:
        return str(ip_network(unverified.strip(), strict=True))
    except ValueError as exc:
        raise InvalidRequestError(
            f"{unverified[:64]!r} is not a network in CIDR form with its host bits zero "
            "(e.g. 10.0.0.0/8 or 2001:db8::/32)"
        ) from exc


@dataclass(frozen=True)
class AwsIamBounds:
    """The bounds of one aws_iam auth method; an empty tuple means "not set"."""

    bound_aws_account_id: tuple[str, ...]
    bound_arn: tuple[str, ...] = ()
    bound_role_name: tuple[str, ...] = ()
    bound_role_id: tuple[str, ...] = ()
    bound_resource_id: tuple[str, ...] = ()
    bound_user_name: tuple[str, ...] = ()
    bound_user_id: tuple[str, ...] = ()
    bound_ips: tuple[IpNetwork, ...] = ()

    def __post_init__(self) -> None:
        if not self.bound_aws_account_id:
            raise InvalidRequestError("bound_aws_account_id needs at least one account ID")
        for account_id in self.bound_aws_account_id:
            validate_account_id(account_id)
        for attribute, _, _ in _GLOB_BOUNDS:
            for value in getattr(self, attribute):
                validate_bound_glob(value)


def _source_address(source_ip: str | IpAddress | None) -> IpAddress | None:
    if source_ip is None:
        return None
    try:
        address = ip_address(source_ip)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:10.1.2.3 from a dual-stack socket is the IPv4 client 10.1.2.3.
        return address.ipv4_mapped
    return address


def check_bounds(
    bounds: AwsIamBounds, claims: AwsIdentityClaims, source_ip: str | IpAddress | None
) -> None:
    """Raise AuthenticationDenied unless ``claims`` (from ``source_ip``) satisfy ``bounds``."""
    # Cross-account access: the account is the trust boundary; names mean nothing outside it.
    if claims.account_id not in bounds.bound_aws_account_id:
        raise AuthenticationDenied(f"account {claims.account_id} not in bound_aws_account_id")

    # Network binding: a credential stolen from the workload is useless from elsewhere.
    if bounds.bound_ips:
        address = _source_address(source_ip)
        if address is None:
            raise AuthenticationDenied("bound_ips is set but the source address is unknown")
        if not any(address in network for network in bounds.bound_ips):
            raise AuthenticationDenied(f"source address {address} not in bound_ips")

    # Over-broad globs: the account root or a federated user carries no role or user claims,
    # so only an exact bound_arn entry — never a wildcard — admits it.
    if claims.principal_type.requires_explicit_arn and claims.arn not in bounds.bound_arn:
        raise AuthenticationDenied(
            f"a {claims.principal_type.value} principal logs in only when its exact ARN "
            f"{claims.arn!r} is listed in bound_arn"
        )

    for attribute, claim, words in _GLOB_BOUNDS:
        patterns: tuple[str, ...] = getattr(bounds, attribute)
        if not patterns:
            continue
        value: str | None = getattr(claims, claim)
        if value is None:
            raise AuthenticationDenied(
                f"{attribute} is set but the caller ({claims.principal_type.value}) has no {words}"
            )
        if not any(glob_match(pattern, value) for pattern in patterns):
            raise AuthenticationDenied(f"{words} {value!r} not in {attribute}")
