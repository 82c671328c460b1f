"""RuleSet.allowed and RuleSet.may: every decision sentence of SPEC section 4 as a table."""

import re
from collections.abc import Mapping
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.errors import InvalidRequestError
from strongroom.rbac import Capability, Rule, RuleSet, RuleType
from tests.rbac.rules import AUDIT, AUTH, ITEM, NOW, ROLE, C, rule

RW = frozenset({C.READ, C.LIST})


def decide(
    rules: list[Rule],
    path: str,
    claims: Mapping[str, str] | None = None,
    rule_type: RuleType = ITEM,
) -> set[Capability]:
    return set(RuleSet(rules, claims or {}).allowed(rule_type, path, NOW))


# (rules, path, allowed): one pattern feature per block.
PATTERN_CASES = [
    # '*' is any run of characters, '/' included, the empty run too.
    ([rule("/dev/*", C.READ)], "/dev/a", {C.READ, C.LIST}),
    ([rule("/dev/*", C.READ)], "/dev/a/b/c", {C.READ, C.LIST}),
    ([rule("/dev/*", C.READ)], "/dev", set()),
    ([rule("/dev/*", C.READ)], "/devx", set()),
    ([rule("/dev/*", C.READ)], "/prod/a", set()),
    ([rule("/dev*", C.READ)], "/dev", {C.READ, C.LIST}),
    ([rule("/dev*", C.READ)], "/devops/x", {C.READ, C.LIST}),
    ([rule("/*", C.READ)], "/x/y/z", {C.READ, C.LIST}),
    ([rule("/*/config", C.READ)], "/a/config", {C.READ, C.LIST}),
    ([rule("/*/config", C.READ)], "/a/b/config", {C.READ, C.LIST}),
    ([rule("/*/config", C.READ)], "/config", set()),
    ([rule("/*/config", C.READ)], "/a/config/x", set()),
    ([rule("/a*b*c", C.READ)], "/abc", {C.READ, C.LIST}),
    ([rule("/a*b*c", C.READ)], "/a1/b2/c", {C.READ, C.LIST}),
    ([rule("/a*b*c", C.READ)], "/acb", set()),
    ([rule("/a*b*c", C.READ)], "/abcb", set()),
    ([rule("/a*b*/c", C.READ)], "/ab/b/x/c", {C.READ, C.LIST}),
    # '+' is exactly one segment: one or more characters other than '/'.
    ([rule("/dev/+", C.READ)], "/dev/a", {C.READ, C.LIST}),
    ([rule("/dev/+", C.READ)], "/dev/a/b", set()),
    ([rule("/dev/+", C.READ)], "/dev", set()),
    ([rule("/dev/+/config", C.READ)], "/dev/web/config", {C.READ, C.LIST}),
    ([rule("/dev/+/config", C.READ)], "/dev/a/b/config", set()),
    ([rule("/+/+", C.READ)], "/a/b", {C.READ, C.LIST}),
    ([rule("/+/+", C.READ)], "/a", set()),
    ([rule("/+/+", C.READ)], "/a/b/c", set()),
    ([rule("/+/*", C.READ)], "/a/b/c", {C.READ, C.LIST}),
    ([rule("/+/*", C.READ)], "/a", set()),
    ([rule("/x*/+/y", C.READ)], "/x1/x2/a/y", {C.READ, C.LIST}),
    ([rule("/x*/+/y", C.READ)], "/x1/a/b/z", set()),
    # Everything else is literal: '.' is not a regex dot, '-' not a range.
    ([rule("/a.b", C.READ)], "/a.b", {C.READ, C.LIST}),
    ([rule("/a.b", C.READ)], "/aXb", set()),
    ([rule("/a.b/*", C.READ)], "/aXb/c", set()),
    ([rule("/v1.0/+", C.READ)], "/v1x0/a", set()),
    ([rule("/a-c", C.READ)], "/b", set()),
    ([rule("/.*", C.READ)], "/x", set()),
    ([rule("/.*", C.READ)], "/.x", {C.READ, C.LIST}),
]


@pytest.mark.parametrize(("rules", "path", "expected"), PATTERN_CASES)
def test_patterns(rules: list[Rule], path: str, expected: set[Capability]) -> None:
    assert decide(rules, path) == expected


CLAIM_CASES = [
    # (claims, path, allowed) for the rule /apps/{{role_name}}/* read.
    ({"role_name": "web"}, "/apps/web/db", {C.READ, C.LIST}),
    ({"role_name": "web"}, "/apps/db/db", set()),
    ({"role_name": "w.e_b-1"}, "/apps/w.e_b-1/x", {C.READ, C.LIST}),
    ({"role_name": "x" * 128}, "/apps/" + "x" * 128 + "/k", {C.READ, C.LIST}),
    # A value that is not one valid segment never matches.
    ({}, "/apps/web/db", set()),
    ({"user_name": "web"}, "/apps/web/db", set()),
    ({"role_name": "a/b"}, "/apps/a/b/db", set()),
    ({"role_name": ".."}, "/apps/../db", set()),
    ({"role_name": "."}, "/apps/./db", set()),
    ({"role_name": ""}, "/apps//db", set()),
    ({"role_name": "*"}, "/apps/db/db", set()),  # a claim is never a wildcard
    ({"role_name": "*"}, "/apps/*/db", set()),
    ({"role_name": "x" * 129}, "/apps/" + "x" * 129 + "/k", set()),
]


@pytest.mark.parametrize(("claims", "path", "expected"), CLAIM_CASES)
def test_claim_templates(claims: dict[str, str], path: str, expected: set[Capability]) -> None:
    assert decide([rule("/apps/{{role_name}}/*", C.READ)], path, claims) == expected


def test_claims_inside_a_segment_and_arn_never_matching() -> None:
    claims = {"account_id": "123456789012", "arn": "arn:aws:iam::123456789012:role/web"}
    rules = [rule("/acct-{{account_id}}-x", C.READ), rule("/arns/{{arn}}", C.READ)]
    assert decide(rules, "/acct-123456789012-x", claims) == {C.READ, C.LIST}
    assert decide(rules, "/acct-1-x", claims) == set()
    # ARNs hold ':' and '/', so they are never one segment: such a rule matches nothing.
    assert decide(rules, "/arns/arn:aws:iam::123456789012:role/web", claims) == set()


def test_an_unfillable_template_in_a_deny_does_not_deny() -> None:
    # The documented consequence of "never matches": deny rules keyed on a claim apply only
    # to callers who have that claim.
    rules = [rule("/apps/*", C.READ), rule("/apps/{{role_name}}", C.DENY)]
    assert decide(rules, "/apps/web", {"role_name": "web"}) == set()
    assert decide(rules, "/apps/web", {}) == {C.READ, C.LIST}


# (rules, path, allowed): how matching rules combine.
COMBINE_CASES = [
    # Deny wins, across rules and roles, whatever the specificity.
    ([rule("/dev/*", C.READ, C.UPDATE), rule("/dev/secret", C.DENY)], "/dev/secret", set()),
    (
        [rule("/dev/*", C.READ, C.UPDATE), rule("/dev/secret", C.DENY)],
        "/dev/other",
        {C.READ, C.UPDATE, C.LIST},
    ),
    ([rule("/prod/db", C.READ), rule("/prod/*", C.DENY)], "/prod/db", set()),
    ([rule("/prod/*", C.DENY), rule("/*", C.READ)], "/shared/k", {C.READ, C.LIST}),
    ([rule("/x", C.READ, C.DENY)], "/x", set()),
    ([rule("/x", C.READ), rule("/x", C.DENY)], "/x", set()),
    ([rule("/x/*", C.DENY), rule("/x/+", C.READ), rule("/x/y", C.READ)], "/x/y", set()),
    # Otherwise the union of every matching rule.
    ([rule("/dev/*", C.READ), rule("/dev/a", C.UPDATE)], "/dev/a", {C.READ, C.UPDATE, C.LIST}),
    ([rule("/dev/*", C.READ), rule("/dev/a", C.UPDATE)], "/dev/b", {C.READ, C.LIST}),
    (
        [rule("/*", C.CREATE), rule("/+", C.DELETE), rule("/a", C.READ)],
        "/a",
        {C.CREATE, C.DELETE, C.READ, C.LIST},
    ),
    ([rule("/a", C.READ), rule("/a", C.UPDATE)], "/a", {C.READ, C.UPDATE, C.LIST}),
    # list is implied by any other capability, and may stand alone.
    ([rule("/x", C.CREATE)], "/x", {C.CREATE, C.LIST}),
    ([rule("/x", C.DELETE)], "/x", {C.DELETE, C.LIST}),
    ([rule("/x", C.LIST)], "/x", {C.LIST}),
    # Deny alone grants nothing, and a rule with no capabilities is inert.
    ([rule("/x", C.DENY)], "/x", set()),
    ([rule("/x")], "/x", set()),
    # No matching rule: nothing.
    ([], "/x", set()),
    ([rule("/y", C.READ), rule("/y/*", C.READ)], "/x", set()),
]


@pytest.mark.parametrize(("rules", "path", "expected"), COMBINE_CASES)
def test_combining(rules: list[Rule], path: str, expected: set[Capability]) -> None:
    assert decide(rules, path) == expected


def test_roles_are_just_more_rules() -> None:
    # A token's roles contribute their rules to one RuleSet; deny in one role beats another.
    developer = [rule("/dev/*", C.READ, C.UPDATE)]
    auditor = [rule("/dev/payroll/*", C.DENY)]
    rules = RuleSet([*developer, *auditor], {})
    assert rules.allowed(ITEM, "/dev/payroll/q1", NOW) == frozenset()
    assert rules.allowed(ITEM, "/dev/app/k", NOW) == {C.READ, C.UPDATE, C.LIST}


@pytest.mark.parametrize(
    ("rule_type", "path", "expected"),
    [
        (ITEM, "/admin", {C.READ, C.LIST}),
        (ROLE, "/admin", {C.UPDATE, C.LIST}),
        (AUTH, "/admin", set()),
        (AUDIT, "/admin", set()),
        (AUDIT, "/", {C.READ, C.LIST}),
        (ROLE, "/admins", set()),
    ],
)
def test_rule_types_are_kept_apart(
    rule_type: RuleType, path: str, expected: set[Capability]
) -> None:
    rules = [
        rule("/*", C.READ),
        rule("/admin", C.UPDATE, rule_type=ROLE),
        rule("/", C.READ, rule_type=AUDIT),
    ]
    assert decide(rules, path, rule_type=rule_type) == expected


def test_audit_star_covers_the_audit_root() -> None:
    assert decide([rule("/*", C.READ, rule_type=AUDIT)], "/", rule_type=AUDIT) == RW


SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([rule("/a", C.READ, expires_at=NOW + SECOND)], RW),
        ([rule("/a", C.READ, expires_at=NOW)], set()),  # expires_at <= now: gone
        ([rule("/a", C.READ, expires_at=NOW - SECOND)], set()),
        ([rule("/*", C.READ, expires_at=NOW)], set()),
        ([rule("/*", C.READ, expires_at=NOW + SECOND)], RW),
        ([rule("/a", C.READ, expires_at=NOW), rule("/a", C.UPDATE)], {C.UPDATE, C.LIST}),
        ([rule("/*", C.READ, expires_at=NOW), rule("/+", C.UPDATE)], {C.UPDATE, C.LIST}),
        # An expired deny no longer takes anything away; a live one still does.
        ([rule("/a", C.READ), rule("/a", C.DENY, expires_at=NOW)], RW),
        ([rule("/a", C.READ), rule("/*", C.DENY, expires_at=NOW)], RW),
        ([rule("/a", C.READ, expires_at=NOW), rule("/*", C.DENY, expires_at=NOW + SECOND)], set()),
        # Same pattern, different expiry: kept apart, each judged on its own.
        ([rule("/a", C.READ, expires_at=NOW + SECOND), rule("/a", C.UPDATE, expires_at=NOW)], RW),
    ],
)
def test_expiring_rules(rules: list[Rule], expected: set[Capability]) -> None:
    assert decide(rules, "/a") == expected


def test_expiry_is_judged_at_the_given_now() -> None:
    rules = RuleSet([rule("/a", C.READ, expires_at=NOW), rule("/b/*", C.READ, expires_at=NOW)], {})
    for path in ("/a", "/b/c"):
        assert rules.allowed(ITEM, path, NOW - SECOND) == RW
        assert rules.allowed(ITEM, path, NOW) == frozenset()


@pytest.mark.parametrize(
    ("capability", "path", "expected"),
    [
        (C.READ, "/dev/a", True),
        (C.LIST, "/dev/a", True),
        (C.UPDATE, "/dev/a", False),
        (C.READ, "/prod/a", False),
        (C.DENY, "/dev/a", False),  # deny is never "held"
        (C.DENY, "/dev/secret", False),
        (C.READ, "/dev/secret", False),
    ],
)
def test_may(capability: Capability, path: str, expected: bool) -> None:
    rules = RuleSet([rule("/dev/*", C.READ), rule("/dev/secret", C.DENY)], {})
    assert rules.may(capability, ITEM, path, NOW) is expected


def test_a_damaged_stored_rule_is_refused_not_dropped() -> None:
    # Dropping an unparsable rule silently could drop a deny; refuse to build instead.
    with pytest.raises(InvalidRequestError):
        RuleSet([rule("/dev/../x", C.DENY)], {})


def test_rule_type_given_as_its_wire_name() -> None:
    stored = Rule("role-rule", "/admin", frozenset({C.READ}))  # type: ignore[arg-type]
    assert RuleSet([stored], {}).allowed(ROLE, "/admin", NOW) == RW


# Property: the indexed, merged, compiled RuleSet decides exactly as the SPEC sentence does
# when read literally: loop over every rule, match with a plain regex, deny wins, else union.
def _plain_regex(pattern: str, claims: Mapping[str, str]) -> re.Pattern[str] | None:
    parts = []
    for segment in pattern[1:].split("/"):
        if segment == "+":
            parts.append("[^/]+")
            continue
        for name in re.findall(r"\{\{(\w+)\}\}", segment):
            value = claims.get(name, "")
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", value) or value in (".", ".."):
                return None
            segment = segment.replace("{{" + name + "}}", value)
        parts.append("".join(".*" if c == "*" else re.escape(c) for c in segment))
    return re.compile("/" + "/".join(parts), re.DOTALL)


def _by_the_letter(rules: list[Rule], claims: Mapping[str, str], path: str) -> set[Capability]:
    granted: set[Capability] = set()
    for each in rules:
        regex = _plain_regex(each.path, claims)
        if each.live(NOW) and regex is not None and regex.fullmatch(path):
            granted |= each.capabilities
    if C.DENY in granted or not granted:
        return set()
    return granted | {C.LIST}


_segments = st.sampled_from(["+", "*", "a", "b", "a*", "*b", "{{role_name}}", "x{{user_id}}"])
_rule_paths = st.lists(_segments, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
_rules = st.builds(
    rule,
    _rule_paths,
    st.sampled_from([C.READ, C.UPDATE, C.DENY, C.LIST]),
    expires_at=st.sampled_from([None, NOW, NOW + SECOND]),
)
_paths = st.lists(st.sampled_from(["a", "b", "ab", "ba", "xb", "web"]), min_size=1, max_size=4)


@given(
    rules=st.lists(_rules, max_size=6),
    path=_paths.map(lambda s: "/" + "/".join(s)),
    claims=st.sampled_from([{}, {"role_name": "a"}, {"role_name": "web", "user_id": "b"}]),
)
def test_ruleset_decides_as_the_spec_reads(
    rules: list[Rule], path: str, claims: dict[str, str]
) -> None:
    assert RuleSet(rules, claims).allowed(ITEM, path, NOW) == _by_the_letter(rules, claims, path)
