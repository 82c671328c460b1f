"""RuleSet.covers: the no-escalation check of SPEC section 4, as tables and properties."""

import itertools
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import InvalidRequestError
from strongroom.rbac import Capability, Rule, RuleSet, RuleType, validate_rule_path
from strongroom.rbac.pattern import SEGMENT_CHARS, bind, compile_bound, parse_rule_path
from tests.rbac.rules import AUDIT, AUTH, ITEM, NOW, ROLE, C, rule

# What the bootstrap admin holds: every capability but deny, which would veto the rest.
ALL = frozenset(Capability) - {Capability.DENY}


READ_DEV = [rule("/dev/*", C.READ)]
DEV_WITH_SECRET = [rule("/dev/*", C.READ, C.UPDATE), rule("/dev/secret", C.DENY)]

# (caller's rules, candidate pattern, candidate capabilities, covers?)
ITEM_CASES = [
    (READ_DEV, "/dev/a/*", {C.READ}, True),
    (READ_DEV, "/dev/*", {C.READ}, True),
    (READ_DEV, "/dev/a", {C.READ}, True),
    (READ_DEV, "/dev/+/x*", {C.READ}, True),
    (READ_DEV, "/*", {C.READ}, False),
    (READ_DEV, "/dev", {C.READ}, False),  # /dev/* does not match /dev
    (READ_DEV, "/dev*", {C.READ}, False),  # ... nor /devops
    (READ_DEV, "/dev/*", {C.UPDATE}, False),
    (READ_DEV, "/dev/a", {C.READ, C.UPDATE}, False),
    (READ_DEV, "/dev/*", {C.LIST}, True),  # list is held wherever anything is
    (READ_DEV, "/dev/*", {C.READ, C.LIST}, True),
    (READ_DEV, "/*", {C.LIST}, False),
    (READ_DEV, "/*", {C.DENY}, True),  # deny only takes away
    (READ_DEV, "/*", set(), True),
    ([rule("/dev/*", C.CREATE)], "/dev/x", {C.LIST}, True),
    ([rule("/dev/*", C.CREATE)], "/dev/x", {C.READ}, False),
    ([rule("/dev/*", C.LIST)], "/dev/x", {C.LIST}, True),
    # '+' is one segment; '*' spans segments.
    ([rule("/dev/+", C.READ)], "/dev/*", {C.READ}, False),
    ([rule("/dev/+", C.READ)], "/dev/+", {C.READ}, True),
    ([rule("/dev/+", C.READ)], "/dev/x", {C.READ}, True),
    ([rule("/dev/+", C.READ)], "/dev/x-*", {C.READ}, False),  # /dev/x-a/b
    ([rule("/dev/+", C.READ)], "/dev/{{role_name}}", {C.READ}, True),
    ([rule("/+/+", C.READ)], "/+/*", {C.READ}, False),
    ([rule("/*/+", C.READ)], "/+/+/+", {C.READ}, True),
    ([rule("/*x", C.READ)], "/a*x", {C.READ}, True),
    ([rule("/a*x", C.READ)], "/*x", {C.READ}, False),
    ([rule("/a*b*c", C.READ)], "/a*bc", {C.READ}, True),
    ([rule("/a*bc", C.READ)], "/a*b*c", {C.READ}, False),
    # Literal characters are literal.
    ([rule("/a.b/*", C.READ)], "/a.b/x", {C.READ}, True),
    ([rule("/a.b/*", C.READ)], "/a+b/x".replace("+", "-"), {C.READ}, False),
    # The union of the caller's rules counts, as it does in a decision.
    ([rule("/dev/+", C.READ), rule("/dev/+/*", C.READ)], "/dev/*", {C.READ}, True),
    ([rule("/dev/*", C.READ), rule("/dev/*", C.UPDATE)], "/dev/a", {C.READ, C.UPDATE}, True),
    ([rule("/a/*", C.READ), rule("/b/*", C.READ)], "/+/x", {C.READ}, False),
    # A deny anywhere under the candidate blocks it.
    (DEV_WITH_SECRET, "/dev/*", {C.READ}, False),
    (DEV_WITH_SECRET, "/dev/secret*", {C.READ}, False),
    (DEV_WITH_SECRET, "/dev/+", {C.UPDATE}, False),
    (DEV_WITH_SECRET, "/dev/a/*", {C.READ, C.UPDATE}, True),
    (DEV_WITH_SECRET, "/dev/secre", {C.READ}, True),
    (DEV_WITH_SECRET, "/dev/secrets", {C.READ}, True),
    (DEV_WITH_SECRET, "/dev/+/x", {C.READ}, True),  # two segments: never /dev/secret
    (DEV_WITH_SECRET, "/dev/*", {C.DENY}, True),
    ([rule("/dev/*", C.READ, C.DENY)], "/dev/a", {C.READ}, False),
    # Admin: every capability on /* covers anything.
    ([rule("/*", *ALL)], "/anything/*", ALL | {C.DENY}, True),
    ([rule("/*", *ALL)], "/+", ALL, True),
    ([rule("/*", *ALL)], "/a/{{arn}}/*", ALL, True),
    ([rule("/*", *ALL)], "/*", ALL, True),
    # No rules of this type: nothing is covered but the empty grant.
    ([], "/a", {C.READ}, False),
    ([], "/a", set(), True),
    ([rule("/*", *ALL, rule_type=ROLE)], "/a", {C.READ}, False),
]


@pytest.mark.parametrize(("rules", "pattern", "capabilities", "expected"), ITEM_CASES)
def test_covers_items(
    rules: list[Rule], pattern: str, capabilities: set[Capability], expected: bool
) -> None:
    assert RuleSet(rules, {}).covers(ITEM, pattern, frozenset(capabilities), NOW) is expected


# (caller's claims, caller's rules, candidate, covers?) for read.
CLAIM_CASES = [
    # A template in the candidate stands for any segment: the rule serves other callers too.
    ({"role_name": "web"}, [rule("/apps/*", C.READ)], "/apps/{{role_name}}/*", True),
    ({"role_name": "web"}, [rule("/apps/*", C.READ)], "/{{role_name}}/*", False),
    ({"role_name": "web"}, [rule("/apps/+", C.READ)], "/apps/{{role_name}}", True),
    ({"role_name": "web"}, [rule("/apps/x*", C.READ)], "/apps/x{{role_name}}", True),
    ({"role_name": "web"}, [rule("/apps/x*", C.READ)], "/apps/{{role_name}}x", False),
    # A template in the caller's own rule is bound to the caller's own claim.
    ({"role_name": "web"}, [rule("/apps/{{role_name}}/*", C.READ)], "/apps/web/db", True),
    ({"role_name": "web"}, [rule("/apps/{{role_name}}/*", C.READ)], "/apps/db/x", False),
    ({"role_name": "web"}, [rule("/apps/{{role_name}}/*", C.READ)], "/apps/{{role_name}}/*", False),
    ({}, [rule("/apps/{{role_name}}/*", C.READ)], "/apps/web/db", False),
    ({"role_name": "a/b"}, [rule("/apps/{{role_name}}/*", C.READ)], "/apps/a/b/c", False),
    # A deny the caller's claims cannot fill does not apply to the caller.
    ({}, [rule("/apps/*", C.READ), rule("/apps/{{role_name}}", C.DENY)], "/apps/*", True),
    (
        {"role_name": "web"},
        [rule("/apps/*", C.READ), rule("/apps/{{role_name}}", C.DENY)],
        "/apps/*",
        False,
    ),
    (
        {"role_name": "web"},
        [rule("/apps/*", C.READ), rule("/apps/{{role_name}}", C.DENY)],
        "/apps/db",
        True,
    ),
]


@pytest.mark.parametrize(("claims", "rules", "pattern", "expected"), CLAIM_CASES)
def test_covers_with_templates(
    claims: dict[str, str], rules: list[Rule], pattern: str, expected: bool
) -> None:
    assert RuleSet(rules, claims).covers(ITEM, pattern, frozenset({C.READ}), NOW) is expected


# (rule type, caller's rules, candidate, covers?) for update; names are one segment.
TYPED_CASES = [
    (ROLE, [rule("/*", C.UPDATE, rule_type=ROLE)], "/team-*", True),
    (ROLE, [rule("/+", C.UPDATE, rule_type=ROLE)], "/*", True),  # a role name is one segment
    (ROLE, [rule("/team-*", C.UPDATE, rule_type=ROLE)], "/team-{{role_name}}", True),
    (ROLE, [rule("/team-*", C.UPDATE, rule_type=ROLE)], "/team*", False),
    (ROLE, [rule("/team-*", C.UPDATE, rule_type=ROLE)], "/+", False),
    (ROLE, [rule("/*", C.UPDATE)], "/admin", False),  # item rules say nothing of roles
    (AUTH, [rule("/*", C.UPDATE, rule_type=AUTH)], "/ci-*", True),
    (
        AUTH,
        [rule("/*", C.UPDATE, rule_type=AUTH), rule("/root", C.DENY, rule_type=AUTH)],
        "/r*",
        False,
    ),
    (
        AUTH,
        [rule("/*", C.UPDATE, rule_type=AUTH), rule("/root", C.DENY, rule_type=AUTH)],
        "/ci-*",
        True,
    ),
    (AUDIT, [rule("/", C.UPDATE, rule_type=AUDIT)], "/", True),
    (AUDIT, [rule("/", C.UPDATE, rule_type=AUDIT)], "/*", False),
    (AUDIT, [rule("/*", C.UPDATE, rule_type=AUDIT)], "/", True),
]


@pytest.mark.parametrize(("rule_type", "rules", "pattern", "expected"), TYPED_CASES)
def test_covers_other_rule_types(
    rule_type: RuleType, rules: list[Rule], pattern: str, expected: bool
) -> None:
    covered = RuleSet(rules, {}).covers(rule_type, pattern, frozenset({C.UPDATE}), NOW)
    assert covered is expected


def test_covers_counts_only_live_rules() -> None:
    rules = [
        rule("/dev/*", C.READ, expires_at=NOW),
        rule("/prod/*", C.READ),
        rule("/prod/secret", C.DENY, expires_at=NOW),
        rule("/ops/*", C.READ, expires_at=NOW + timedelta(hours=1)),
    ]
    caller = RuleSet(rules, {})
    soon = NOW + timedelta(minutes=1)
    earlier = NOW - timedelta(seconds=1)
    assert not caller.covers(ITEM, "/dev/a", frozenset({C.READ}), NOW, expires_at=soon)
    assert caller.covers(ITEM, "/dev/a", frozenset({C.READ}), earlier, expires_at=earlier)
    assert caller.covers(ITEM, "/prod/*", frozenset({C.READ}), NOW)
    assert not caller.covers(ITEM, "/prod/*", frozenset({C.READ}), earlier)
    assert caller.covers(ITEM, "/ops/x", frozenset({C.READ}), NOW, expires_at=soon)


HOUR = NOW + timedelta(hours=1)
DAY = NOW + timedelta(days=1)

# (caller's rules, candidate's expiry, covers?) for read on /dev/a: expiry is part of a grant.
EXPIRY_CASES = [
    ([rule("/dev/*", C.READ)], None, True),
    ([rule("/dev/*", C.READ)], DAY, True),
    # Attack: re-setting a rule held for an hour as one that never expires, or lasts a day.
    ([rule("/dev/*", C.READ, expires_at=HOUR)], None, False),
    ([rule("/dev/*", C.READ, expires_at=HOUR)], DAY, False),
    ([rule("/dev/*", C.READ, expires_at=HOUR)], HOUR, True),  # no later than its own
    ([rule("/dev/*", C.READ, expires_at=DAY)], HOUR, True),
    # Only the grants that last long enough count, even where others cover the path for now.
    ([rule("/dev/*", C.READ, expires_at=HOUR), rule("/dev/+", C.READ)], None, True),
    ([rule("/dev/*", C.READ), rule("/+/a", C.READ, expires_at=HOUR)], DAY, True),
    ([rule("/dev/b", C.READ), rule("/+/a", C.READ, expires_at=HOUR)], DAY, False),
    # Every live deny counts, however soon it lapses.
    ([rule("/dev/*", C.READ), rule("/dev/a", C.DENY, expires_at=HOUR)], DAY, False),
    ([rule("/dev/*", C.READ), rule("/dev/a", C.DENY, expires_at=NOW)], None, True),
]


@pytest.mark.parametrize(("rules", "expires_at", "expected"), EXPIRY_CASES)
def test_covers_needs_grants_that_last_as_long(
    rules: list[Rule], expires_at: datetime | None, expected: bool
) -> None:
    caller = RuleSet(rules, {})
    covered = caller.covers(ITEM, "/dev/a", frozenset({C.READ}), NOW, expires_at=expires_at)
    assert covered is expected


def test_covers_is_exact_when_the_caller_names_every_character() -> None:
    # Every segment starts with some character; one rule per character leaves no gap, so
    # no stand-in "other character" may be invented.
    caller = RuleSet([rule(f"/a/{c}*", C.READ) for c in sorted(SEGMENT_CHARS)], {})
    assert caller.covers(ITEM, "/a/+", frozenset({C.READ}), NOW)
    partial = RuleSet([rule(f"/a/{c}*", C.READ) for c in sorted(SEGMENT_CHARS - {"q"})], {})
    assert not partial.covers(ITEM, "/a/+", frozenset({C.READ}), NOW)


@pytest.mark.parametrize("pattern", ["/a//b", "/a/../b", "/a+", "/{{nope}}", ""])
def test_covers_refuses_an_invalid_candidate(pattern: str) -> None:
    caller = RuleSet([rule("/*", *ALL)], {})
    with pytest.raises(InvalidRequestError):
        caller.covers(ITEM, pattern, frozenset({C.READ}), NOW)


# Property: whenever covers() says yes, the caller really does hold the capability on every
# path the candidate matches, for any claims that fill the candidate's templates. Checked by
# brute force over every well-formed path up to six characters ('z' plays every character no
# pattern names).
_ALPHABET = "ab.z"
_SHORT_PATHS = [
    path
    for size in range(2, 7)
    for chars in itertools.product(_ALPHABET + "/", repeat=size - 1)
    if (path := "/" + "".join(chars))
    and all(segment not in ("", ".", "..") for segment in path[1:].split("/"))
]
_pieces = st.sampled_from(["a", "b", ".", "*", "ab"])
_segment = st.one_of(
    st.just("+"),
    st.lists(_pieces, min_size=1, max_size=3).map("".join).filter(lambda s: s not in (".", "..")),
)
_candidate_segment = st.one_of(_segment, st.just("{{role_name}}"), st.just("a{{role_name}}"))
_patterns = st.lists(_segment, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
_candidates = st.lists(_candidate_segment, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
_grants = st.sampled_from([{C.READ}, {C.READ, C.UPDATE}, {C.UPDATE}, {C.DENY}])
_callers = st.lists(st.tuples(_patterns, _grants), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(caller=_callers, candidate=_candidates, role_name=st.sampled_from(["a", "b", "ab", "z"]))
def test_covers_is_sound(
    caller: list[tuple[str, set[Capability]]], candidate: str, role_name: str
) -> None:
    rules = RuleSet([rule(path, *grant) for path, grant in caller], {"role_name": "a"})
    if not rules.covers(ITEM, candidate, frozenset({C.READ}), NOW):
        return
    bound = bind(
        parse_rule_path(validate_rule_path(candidate, ITEM), ITEM).tokens, {"role_name": role_name}
    )
    assert bound is not None
    matcher = compile_bound(bound)
    for path in _SHORT_PATHS:
        if matcher.fullmatch(path):
            assert rules.may(C.READ, ITEM, path, NOW), path


@settings(max_examples=150, deadline=None)
@given(caller=_callers, candidate=_patterns)
def test_covers_refuses_when_a_short_path_lacks_it(
    caller: list[tuple[str, set[Capability]]], candidate: str
) -> None:
    # The converse, checked where brute force can: if read is missing on some short path the
    # candidate matches, covers() must say no.
    rules = RuleSet([rule(path, *grant) for path, grant in caller], {})
    bound = bind(parse_rule_path(validate_rule_path(candidate, ITEM), ITEM).tokens, {})
    assert bound is not None
    matcher = compile_bound(bound)
    lacking = any(
        matcher.fullmatch(path) and not rules.may(C.READ, ITEM, path, NOW) for path in _SHORT_PATHS
    )
    if lacking:
        assert not rules.covers(ITEM, candidate, frozenset({C.READ}), NOW)
