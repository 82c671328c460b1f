"""Which changes to an auth method's settings may let more in (auth_methods.widening)."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom.auth_methods.widening import widened_settings

BASE: dict[str, Any] = {
    "bound_aws_account_id": ["123456789012"],
    "bound_arn": [],
    "bound_role_name": ["web-*", "batch"],
    "bound_role_id": [],
    "bound_resource_id": [],
    "bound_user_name": [],
    "bound_user_id": [],
    "bound_ips": ["10.0.0.0/8"],
    "sts_url": "https://sts.amazonaws.com",
    "jwt_ttl": 30,
    "access_expires": "2030-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "widened"),
    [
        ({}, []),
        # Narrowing: fewer entries, a new condition, a smaller network, a shorter life.
        ({"bound_role_name": ["batch"]}, []),
        ({"bound_role_name": ["batch", "web-*"]}, []),  # the same values in another order
        ({"bound_resource_id": ["i-0abc"]}, []),
        ({"bound_user_name": ["deploy-bot"]}, []),
        ({"bound_ips": ["10.1.0.0/16", "10.2.3.4/32"]}, []),
        ({"jwt_ttl": 5}, []),
        ({"access_expires": "2029-06-01T00:00:00Z"}, []),
        ({"access_expires": "2030-01-01T00:00:00+00:00"}, []),  # the same moment
        # Widening: the attack is adding the caller's own IAM role to a method whose
        # associated roles are stronger than the caller.
        ({"bound_role_name": ["web-*", "batch", "attacker"]}, ["bound_role_name"]),
        ({"bound_role_name": ["web-a*"]}, ["bound_role_name"]),  # narrower in fact; not seen
        ({"bound_role_name": []}, ["bound_role_name"]),  # an empty list is no condition
        ({"bound_aws_account_id": ["123456789012", "999999999999"]}, ["bound_aws_account_id"]),
        # bound_arn also admits the root or a federated user it names exactly.
        ({"bound_arn": ["arn:aws:iam::123456789012:root"]}, ["bound_arn"]),
        ({"bound_ips": []}, ["bound_ips"]),
        ({"bound_ips": ["10.0.0.0/8", "192.168.0.0/16"]}, ["bound_ips"]),
        ({"bound_ips": ["0.0.0.0/0"]}, ["bound_ips"]),
        ({"bound_ips": ["::/0"]}, ["bound_ips"]),
        ({"sts_url": "https://sts.eu-west-1.amazonaws.com"}, ["sts_url"]),
        ({"sts_url": None}, ["sts_url"]),
        ({"jwt_ttl": 60}, ["jwt_ttl"]),
        ({"jwt_ttl": None}, ["jwt_ttl"]),  # the server's default may be longer
        ({"access_expires": "2031-01-01T00:00:00Z"}, ["access_expires"]),
        ({"access_expires": None}, ["access_expires"]),
        (
            {"bound_role_name": None, "bound_ips": None, "jwt_ttl": 720},
            ["bound_role_name", "bound_ips", "jwt_ttl"],
        ),
    ],
)
def test_widened_settings(change: dict[str, Any], widened: list[str]) -> None:
    assert widened_settings(BASE, {**BASE, **change}) == widened


@pytest.mark.parametrize(
    ("old", "new", "widened"),
    [
        # Unset settings: a new limit narrows, except a jwt_ttl (the default is unknown here).
        ({}, {"bound_ips": ["10.0.0.0/8"]}, []),
        ({}, {"access_expires": "2030-01-01T00:00:00Z"}, []),
        ({}, {"jwt_ttl": 5}, ["jwt_ttl"]),
        ({"bound_ips": ["10.0.0.0/8"]}, {"bound_ips": ["2001:db8::/32"]}, ["bound_ips"]),
        ({"bound_arn": ["arn:aws:iam::1:role/a"]}, {"bound_arn": []}, ["bound_arn"]),
        ({"bound_arn": ["a", "b"]}, {"bound_arn": ["a"]}, []),
    ],
)
def test_widened_settings_from_unset(
    old: dict[str, Any], new: dict[str, Any], widened: list[str]
) -> None:
    assert widened_settings(old, new) == widened
