"""Capabilities, rule types and the Rule record."""

from datetime import UTC, datetime

import pytest

from strongroom.errors import InvalidRequestError
from strongroom.rbac import Capability, Rule, RuleType, parse_capabilities
from strongroom.rbac.capability import DECISION, mask_of

C = Capability


def test_wire_names_are_the_spec_names() -> None:
    assert [c.value for c in Capability] == ["read", "list", "create", "update", "delete", "deny"]
    assert [t.value for t in RuleType] == [
        "item-rule",
        "auth-method-rule",
        "role-rule",
        "audit-rule",
    ]


@pytest.mark.parametrize(
    ("unverified", "expected"),
    [
        (["read"], {C.READ}),
        (["read", "list", "read"], {C.READ, C.LIST}),
        (("create", "update", "delete"), {C.CREATE, C.UPDATE, C.DELETE}),
        (["deny"], {C.DENY}),
        (["deny", "read"], {C.DENY, C.READ}),
        ({"list"}, {C.LIST}),
        ([C.UPDATE], {C.UPDATE}),
    ],
)
def test_parse_capabilities_accepts(unverified: list[str], expected: set[Capability]) -> None:
    assert parse_capabilities(unverified) == frozenset(expected)


@pytest.mark.parametrize(
    ("unverified", "message"),
    [
        ([], "at least one capability"),
        (["READ"], "unknown capability 'READ'"),
        (["read", "write"], "unknown capability 'write'"),
        (["sudo"], "unknown capability"),
        ([""], "unknown capability"),
        ([1], "unknown capability 1"),
        ([["read"]], "unknown capability"),
        (["x" * 10_000], r"unknown capability 'x{39}; known"),
        ("read", "not a single string"),
        (b"read", "not a single string"),
    ],
)
def test_parse_capabilities_rejects(unverified: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_capabilities(unverified)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("granted", "decided"),
    [
        (set(), set()),
        ({C.READ}, {C.READ, C.LIST}),
        ({C.LIST}, {C.LIST}),
        ({C.CREATE, C.DELETE}, {C.CREATE, C.DELETE, C.LIST}),
        ({C.DENY}, set()),
        ({C.DENY, C.READ, C.LIST}, set()),
    ],
)
def test_decision_table(granted: set[Capability], decided: set[Capability]) -> None:
    assert DECISION[mask_of(granted)] == frozenset(decided)


def test_rule_refuses_naive_expiry() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Rule(RuleType.ITEM, "/a", frozenset({C.READ}), datetime(2030, 1, 1))  # noqa: DTZ001


def test_rule_live_until_its_expiry() -> None:
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    rule = Rule(RuleType.ITEM, "/a", frozenset({C.READ}), expiry)
    assert rule.live(datetime(2029, 12, 31, 23, 59, tzinfo=UTC))
    assert not rule.live(expiry)
    assert Rule(RuleType.ITEM, "/a", frozenset({C.READ})).live(expiry)
