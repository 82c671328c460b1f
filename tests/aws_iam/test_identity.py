"""claims_from_identity: ARN kinds in all three partitions, and cross-account confusion."""

from __future__ import annotations

import pytest

from strongroom.auth.aws_iam import (
    AwsIdentityClaims,
    CallerIdentity,
    PrincipalType,
    claims_from_identity,
)
from strongroom.errors import AuthenticationDenied
from strongroom.rbac import CLAIM_NAMES

ACCOUNT = "123456789012"
PARTITIONS = ["aws", "aws-cn", "aws-us-gov"]


@pytest.mark.parametrize("partition", PARTITIONS)
def test_assumed_role(partition: str) -> None:
    arn = f"arn:{partition}:sts::{ACCOUNT}:assumed-role/app-role/i-0abc1234567890def"
    claims = claims_from_identity(
        CallerIdentity(arn, "AROAEXAMPLEROLEID0001:i-0abc1234567890def", ACCOUNT)
    )
    assert claims.principal_type is PrincipalType.ASSUMED_ROLE
    assert claims.as_dict() == {
        "account_id": ACCOUNT,
        "arn": arn,
        "role_name": "app-role",
        "role_id": "AROAEXAMPLEROLEID0001",
        "resource_id": "i-0abc1234567890def",
    }


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize(
    ("resource", "user_name"),
    [("user/deploy-bot", "deploy-bot"), ("user/ci/team-a/deploy-bot", "deploy-bot")],
)
def test_iam_user(partition: str, resource: str, user_name: str) -> None:
    arn = f"arn:{partition}:iam::{ACCOUNT}:{resource}"
    claims = claims_from_identity(CallerIdentity(arn, "AIDAEXAMPLEUSERID0001", ACCOUNT))
    assert claims.principal_type is PrincipalType.IAM_USER
    assert claims.as_dict() == {
        "account_id": ACCOUNT,
        "arn": arn,
        "user_name": user_name,
        "user_id": "AIDAEXAMPLEUSERID0001",
    }


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize(
    ("resource", "kind"),
    [
        ("root", PrincipalType.ROOT),
        ("federated-user/alice", PrincipalType.FEDERATED_USER),
        ("role/app-role", PrincipalType.OTHER),  # never a caller identity, but not a claim
        ("group/admins", PrincipalType.OTHER),
    ],
)
def test_other_principals_carry_only_account_and_arn(
    partition: str, resource: str, kind: PrincipalType
) -> None:
    service = "sts" if resource.startswith("federated") else "iam"
    arn = f"arn:{partition}:{service}::{ACCOUNT}:{resource}"
    claims = claims_from_identity(CallerIdentity(arn, f"{ACCOUNT}:alice", ACCOUNT))
    assert claims.principal_type is kind
    assert claims.principal_type.requires_explicit_arn
    assert claims.as_dict() == {"account_id": ACCOUNT, "arn": arn}


@pytest.mark.parametrize(
    ("arn", "user_id", "account", "fragment"),
    [
        pytest.param(
            "arn:aws:sts::999999999999:assumed-role/app-role/s",
            "AROAX:s",
            ACCOUNT,
            "differs from the reported Account",
            id="cross-account arn",
        ),
        pytest.param(
            "arn:aws-iso:sts::123456789012:assumed-role/app-role/s",
            "AROAX:s",
            ACCOUNT,
            "partition 'aws-iso'",
            id="other partition",
        ),
        pytest.param("not-an-arn", "x", ACCOUNT, "does not parse", id="garbage"),
        pytest.param("arn:aws:s3:::bucket", "x", ACCOUNT, "does not parse", id="other service"),
        pytest.param(
            "arn:aws:sts:us-east-1:123456789012:assumed-role/r/s",
            "AROAX:s",
            ACCOUNT,
            "does not parse",
            id="region set",
        ),
        pytest.param(
            "arn:aws:sts::123456789012:assumed-role/app-role",
            "AROAX:s",
            ACCOUNT,
            "malformed assumed-role",
            id="no session",
        ),
        pytest.param(
            "arn:aws:sts::123456789012:assumed-role/team/app-role/s",
            "AROAX:s",
            ACCOUNT,
            "malformed assumed-role",
            id="extra segment",
        ),
        pytest.param(
            "arn:aws:sts::123456789012:assumed-role/app-role/s",
            "AROAX",
            ACCOUNT,
            "UserId",
            id="user id without session",
        ),
        pytest.param(
            "arn:aws:sts::123456789012:assumed-role/app-role/s",
            ":s",
            ACCOUNT,
            "UserId",
            id="empty role id",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/ci//bot",
            "AIDAX",
            ACCOUNT,
            "malformed IAM user",
            id="empty path segment",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/",
            "AIDAX",
            ACCOUNT,
            "malformed IAM user",
            id="empty user name",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user", "AIDAX", ACCOUNT, "malformed IAM user", id="bare"
        ),
    ],
)
def test_refused(arn: str, user_id: str, account: str, fragment: str) -> None:
    with pytest.raises(AuthenticationDenied) as caught:
        claims_from_identity(CallerIdentity(arn, user_id, account))
    assert fragment in caught.value.reason


def test_claim_names_are_the_seven_of_the_spec() -> None:
    spec = "account_id arn role_name role_id resource_id user_name user_id"  # in its order
    assert tuple(spec.split()) == CLAIM_NAMES
    claims = AwsIdentityClaims(PrincipalType.ROOT, account_id=ACCOUNT, arn="a")
    assert "principal_type" not in claims.as_dict()
