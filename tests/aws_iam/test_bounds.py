"""check_bounds: AND across lists, OR within one, '*' globs, exact ARN for root/federated."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from strongroom.auth.aws_iam import (
    AwsIamBounds,
    CallerIdentity,
    check_bounds,
    claims_from_identity,
    validate_account_id,
    validate_bound_glob,
    validate_cidr,
)
from strongroom.auth.aws_iam.identity import AwsIdentityClaims
from strongroom.errors import AuthenticationDenied, InvalidRequestError

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/app-role/i-0abc1234567890def"
ROLE = claims_from_identity(
    CallerIdentity(ROLE_ARN, "AROAEXAMPLEROLEID0001:i-0abc1234567890def", ACCOUNT)
)
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/ci/deploy-bot"
USER = claims_from_identity(CallerIdentity(USER_ARN, "AIDAEXAMPLEUSERID0001", ACCOUNT))
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
ROOT = claims_from_identity(CallerIdentity(ROOT_ARN, ACCOUNT, ACCOUNT))
FEDERATED_ARN = f"arn:aws:sts::{ACCOUNT}:federated-user/alice"
FEDERATED = claims_from_identity(CallerIdentity(FEDERATED_ARN, f"{ACCOUNT}:alice", ACCOUNT))
FOREIGN = claims_from_identity(
    CallerIdentity(
        "arn:aws:sts::999999999999:assumed-role/app-role/i-0abc1234567890def",
        "AROAOTHERACCOUNT0001:i-0abc1234567890def",
        "999999999999",
    )
)


def bounds(**kwargs: Any) -> AwsIamBounds:
    kwargs.setdefault("bound_aws_account_id", (ACCOUNT,))
    return AwsIamBounds(**kwargs)


@pytest.mark.parametrize(
    ("claims", "bound", "source_ip"),
    [
        pytest.param(ROLE, {}, None, id="account only"),
        pytest.param(USER, {}, None, id="user, account only"),
        pytest.param(ROLE, {"bound_aws_account_id": ("111111111111", ACCOUNT)}, None, id="2nd"),
        pytest.param(ROLE, {"bound_role_name": ("app-role",)}, None, id="role name"),
        pytest.param(ROLE, {"bound_role_name": ("other", "app-*")}, None, id="OR within"),
        pytest.param(
            ROLE,
            {
                "bound_role_name": ("app-role",),
                "bound_role_id": ("AROAEXAMPLEROLEID0001",),
                "bound_resource_id": ("i-*",),
                "bound_arn": (f"arn:aws:sts::{ACCOUNT}:assumed-role/app-role/*",),
            },
            None,
            id="AND across",
        ),
        pytest.param(USER, {"bound_user_name": ("deploy-bot",)}, None, id="user name"),
        pytest.param(USER, {"bound_user_id": ("AIDA*",)}, None, id="user id"),
        pytest.param(USER, {"bound_arn": (f"arn:aws:iam::{ACCOUNT}:user/ci/*",)}, None, id="path"),
        pytest.param(ROOT, {"bound_arn": (ROOT_ARN,)}, None, id="root by exact arn"),
        pytest.param(FEDERATED, {"bound_arn": ("x", FEDERATED_ARN)}, None, id="federated exact"),
        pytest.param(
            ROLE, {"bound_ips": (ip_network("10.0.0.0/8"),)}, "10.1.2.3", id="ip in network"
        ),
        pytest.param(
            ROLE,
            {"bound_ips": (ip_network("2001:db8::/32"), ip_network("10.0.0.0/8"))},
            ip_address("::ffff:10.1.2.3"),
            id="ipv4-mapped address",
        ),
        pytest.param(ROLE, {"bound_ips": (ip_network("2001:db8::/32"),)}, "2001:db8::1", id="ipv6"),
    ],
)
def test_allowed(claims: AwsIdentityClaims, bound: dict[str, Any], source_ip: Any) -> None:
    check_bounds(bounds(**bound), claims, source_ip)


@pytest.mark.parametrize(
    ("claims", "bound", "source_ip", "fragment"),
    [
        pytest.param(
            ROLE,
            {"bound_aws_account_id": ("111111111111",)},
            None,
            f"account {ACCOUNT} not in bound_aws_account_id",
            id="account",
        ),
        pytest.param(
            FOREIGN,
            {"bound_role_name": ("app-role",)},
            None,
            "account 999999999999 not in",
            id="same role name, other account",
        ),
        pytest.param(
            ROLE,
            {"bound_role_name": ("other",)},
            None,
            "role name 'app-role' not in bound_role_name",
            id="role name",
        ),
        pytest.param(
            ROLE,
            {"bound_role_name": ("App-Role",)},
            None,
            "not in bound_role_name",
            id="case-sensitive",
        ),
        pytest.param(
            ROLE,
            {"bound_role_name": ("app-role",), "bound_resource_id": ("i-9*",)},
            None,
            "resource ID 'i-0abc1234567890def' not in",
            id="AND across lists",
        ),
        pytest.param(
            ROLE,
            {"bound_role_name": ("app?role",)},
            None,
            "not in bound_role_name",
            id="? is literal",
        ),
        pytest.param(
            ROLE,
            {"bound_user_name": ("*",)},
            None,
            "bound_user_name is set but the caller (assumed-role) has no user name",
            id="role has no user name",
        ),
        pytest.param(
            USER, {"bound_role_name": ("*",)}, None, "has no role name", id="user has no role name"
        ),
        pytest.param(ROOT, {}, None, "exact ARN", id="root without bound_arn"),
        pytest.param(
            ROOT,
            {"bound_arn": (f"arn:aws:iam::{ACCOUNT}:*",)},
            None,
            "exact ARN",
            id="root through a glob",
        ),
        pytest.param(ROOT, {"bound_arn": ("*",)}, None, "exact ARN", id="root through star"),
        pytest.param(
            FEDERATED,
            {"bound_arn": (f"arn:aws:sts::{ACCOUNT}:federated-user/*",)},
            None,
            "exact ARN",
            id="federated through a glob",
        ),
        pytest.param(
            ROOT,
            {"bound_arn": (ROOT_ARN,), "bound_role_name": ("*",)},
            None,
            "has no role name",
            id="root with a role bound",
        ),
        pytest.param(
            ROLE,
            {"bound_ips": (ip_network("10.0.0.0/8"),)},
            "192.0.2.1",
            "source address 192.0.2.1 not in bound_ips",
            id="ip outside",
        ),
        pytest.param(
            ROLE,
            {"bound_ips": (ip_network("10.0.0.0/8"),)},
            None,
            "source address is unknown",
            id="ip unknown",
        ),
        pytest.param(
            ROLE,
            {"bound_ips": (ip_network("10.0.0.0/8"),)},
            "not-an-ip",
            "source address is unknown",
            id="ip garbage",
        ),
        pytest.param(
            ROLE,
            {"bound_ips": (ip_network("::/0"),)},
            "10.0.0.1",
            "not in bound_ips",
            id="v4 in v6 network",
        ),
    ],
)
def test_denied(
    claims: AwsIdentityClaims, bound: dict[str, Any], source_ip: Any, fragment: str
) -> None:
    with pytest.raises(AuthenticationDenied) as caught:
        check_bounds(bounds(**bound), claims, source_ip)
    assert fragment in caught.value.reason


@pytest.mark.parametrize(
    "bad",
    [
        {"bound_aws_account_id": ()},
        {"bound_aws_account_id": ("12345678901*",)},
        {"bound_role_name": ("",)},
        {"bound_role_name": ("a\nb",)},
    ],
)
def test_bounds_validate_themselves(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        bounds(**bad)


@pytest.mark.parametrize("value", ["123456789012", "000000000000"])
def test_validate_account_id_accepts(value: str) -> None:
    assert validate_account_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "12345678901", "1234567890123", "12345678901*", "*", "\uff11" * 12, 123]
)
def test_validate_account_id_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequestError, match="12 digits"):
        validate_account_id(value)


@pytest.mark.parametrize(
    "value", ["app-role", "*", "arn:aws:iam::123456789012:role/team/*", "a b", "x" * 256]
)
def test_validate_bound_glob_accepts(value: str) -> None:
    assert validate_bound_glob(value) == value


@pytest.mark.parametrize("value", ["", "x" * 257, "a\tb", "a\x00b", "a\u200bb", None])
def test_validate_bound_glob_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        validate_bound_glob(value)


@pytest.mark.parametrize(
    ("value", "normal"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        (" 192.0.2.0/24 ", "192.0.2.0/24"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_validate_cidr_accepts(value: str, normal: str) -> None:
    assert validate_cidr(value) == normal


@pytest.mark.parametrize("value", ["10.0.0.1/8", "10.0.0.0/33", "banana", "", "10.0.0.0/8/8", 7])
def test_validate_cidr_refuses(value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        validate_cidr(value)
