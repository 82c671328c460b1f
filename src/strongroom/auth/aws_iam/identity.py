"""From the identity STS reports to the claims a login carries (SPEC section 3). Pure.

    arn:<partition>:sts::<account>:assumed-role/<role>/<session>
        role_name = <role>, resource_id = <session> (the instance ID for EC2 instance profiles),
        role_id = UserId before ':'                                      -> ASSUMED_ROLE
    arn:<partition>:iam::<account>:user[/<path>…]/<name>
        user_name = <name>, user_id = UserId                             -> IAM_USER
    arn:<partition>:iam::<account>:root                                   -> ROOT
    arn:<partition>:sts::<account>:federated-user/<name>                  -> FEDERATED_USER
    any other arn:<partition>:(iam|sts)::<account>:<resource>             -> OTHER

Partitions: ``aws``, ``aws-cn``, ``aws-us-gov``. Every login has ``account_id`` and ``arn``.
ROOT, FEDERATED_USER and OTHER principals carry only those two claims, and
:func:`~strongroom.auth.aws_iam.bounds.check_bounds` admits them only through an explicit
``bound_arn``. A malformed ARN, another partition, or an ARN whose account is not ``Account``
raises :class:`~strongroom.errors.AuthenticationDenied`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from strongroom.auth.aws_iam.sts_response import CallerIdentity
from strongroom.errors import AuthenticationDenied
from strongroom.rbac.pattern import CLAIM_NAMES

PARTITIONS = frozenset({"aws", "aws-cn", "aws-us-gov"})
_ARN = re.compile(
    r"arn:(?P<partition>[a-z0-9-]+):(?P<service>iam|sts)::(?P<account>[0-9]{12}):(?P<resource>.+)"
)
# IAM names: letters, digits and +=,.@_- (session names the same, plus nothing else).
_NAME = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)
_PATH_SEGMENT = re.compile(r"[\x21-\x2e\x30-\x7e]{1,512}")  # printable ASCII except '/'


class PrincipalType(StrEnum):
    """What kind of AWS principal signed the request."""

    ASSUMED_ROLE = "assumed-role"
    IAM_USER = "user"
    ROOT = "root"
    FEDERATED_USER = "federated-user"
    OTHER = "other"

    @property
    def requires_explicit_arn(self) -> bool:
        """Principals without role/user claims may log in only through an exact bound_arn."""
        return self not in (PrincipalType.ASSUMED_ROLE, PrincipalType.IAM_USER)


@dataclass(frozen=True)
class AwsIdentityClaims:
    """The claims of one AWS login; ``as_dict()`` gives the ones rules and bounds see."""

    principal_type: PrincipalType
    account_id: str
    arn: str
    role_name: str | None = None
    role_id: str | None = None
    resource_id: str | None = None
    user_name: str | None = None
    user_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The SPEC claim names that are set, in SPEC order (principal_type is not a claim)."""
        claims: dict[str, str] = {}
        for name in CLAIM_NAMES:
            value = getattr(self, name)
            if value is not None:
                claims[name] = value
        return claims


def claims_from_identity(identity: CallerIdentity) -> AwsIdentityClaims:
    """Map a CallerIdentity to claims; raise AuthenticationDenied if it cannot be trusted."""
    match = _ARN.fullmatch(identity.arn)
    if match is None:
        raise AuthenticationDenied(
            f"STS returned an ARN that does not parse: {identity.arn[:300]!r}"
        )
    partition, service, account, resource = match.group(
        "partition", "service", "account", "resource"
    )
    if partition not in PARTITIONS:
        raise AuthenticationDenied(
            f"the caller is in AWS partition {partition!r}; only aws, aws-cn and aws-us-gov log in"
        )
    # Cross-account ARN confusion: names are only meaningful within one account, so an ARN
    # from one account paired with another Account must never reach the bound checks.
    if account != identity.account:
        raise AuthenticationDenied(
            f"the ARN's account {account} differs from the reported Account {identity.account}"
        )
    kind, _, rest = resource.partition("/")

    if service == "sts" and kind == "assumed-role":
        role_name, _, session = rest.partition("/")
        if not _NAME.fullmatch(role_name) or not _NAME.fullmatch(session):
            raise AuthenticationDenied(f"malformed assumed-role ARN {identity.arn[:300]!r}")
        role_id, colon, _ = identity.user_id.partition(":")
        if not colon or not role_id:
            raise AuthenticationDenied(
                "STS reported an assumed role whose UserId is not '<role id>:<session>'"
            )
        return AwsIdentityClaims(
            PrincipalType.ASSUMED_ROLE,
            account_id=account,
            arn=identity.arn,
            role_name=role_name,
            role_id=role_id,
            resource_id=session,
        )

    if service == "iam" and kind == "user":
        *path, user_name = rest.split("/")
        if not _NAME.fullmatch(user_name) or not all(_PATH_SEGMENT.fullmatch(p) for p in path):
            raise AuthenticationDenied(f"malformed IAM user ARN {identity.arn[:300]!r}")
        return AwsIdentityClaims(
            PrincipalType.IAM_USER,
            account_id=account,
            arn=identity.arn,
            user_name=user_name,
            user_id=identity.user_id,
        )

    if service == "iam" and resource == "root":
        principal_type = PrincipalType.ROOT
    elif service == "sts" and kind == "federated-user":
        principal_type = PrincipalType.FEDERATED_USER
    else:
        principal_type = PrincipalType.OTHER
    return AwsIdentityClaims(principal_type, account_id=account, arn=identity.arn)
