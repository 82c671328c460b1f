"""No escalation through any change (SPEC section 4): strongroom.rbac.escalation as tables."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from strongroom.errors import RuleTooComplexError
from strongroom.rbac import Rule, RuleSet, RuleType
from strongroom.rbac.budget import CHECK_BUDGET_STEPS, Budget
from strongroom.rbac.escalation import (
    GRANTABLE,
    Refusal,
    Refused,
    check_grants,
    check_removal,
    check_rule_change,
    weakens_deny,
)
from tests.rbac.rules import AUTH, ITEM, NOW, ROLE, C, rule

HOUR = NOW + timedelta(hours=1)
DAY = NOW + timedelta(days=1)
AGO = NOW - timedelta(minutes=1)


ADMIN = RuleSet([rule("/*", *GRANTABLE, rule_type=t) for t in RuleType], {})
# A reader of /dev/* whose own role denies /dev/secret; it may update roles.
READER = RuleSet(
    [
        rule("/dev/*", C.READ, C.LIST),
        rule("/dev/secret", C.DENY),
        rule("/*", C.UPDATE, rule_type=ROLE),
    ],
    {},
)
# A team lead holding everything under /team/*, and under /tmp/* for an hour.
LEAD = RuleSet([rule("/team/*", *GRANTABLE), rule("/tmp/*", *GRANTABLE, expires_at=HOUR)], {})


# (caller, old rule or None, new rule, expected refusal or None)
RULE_CHANGES = [
    # Plain grants, as covers() decides them.
    (READER, None, rule("/dev/a", C.READ), None),
    (READER, None, rule("/dev/*", C.UPDATE), Refusal.GRANT),
    (READER, None, rule("/dev/secret", C.READ), Refusal.GRANT),  # its own deny is in the way
    (READER, None, rule("/*", C.DENY), None),  # a deny only takes away
    # Expiry is part of a grant.
    (LEAD, None, rule("/tmp/x", C.READ), Refusal.GRANT),
    (LEAD, None, rule("/tmp/x", C.READ, expires_at=HOUR), None),
    (LEAD, None, rule("/tmp/x", C.READ, expires_at=DAY), Refusal.GRANT),
    # Re-setting a rule held only for an hour without the hour.
    (
        LEAD,
        rule("/tmp/x", C.READ, expires_at=HOUR),
        rule("/tmp/x", C.READ),
        Refusal.GRANT,
    ),
    # Replacing a deny by a grant lifts it: only where the caller holds everything there.
    (READER, rule("/dev/a", C.DENY), rule("/dev/a", C.READ), Refusal.DENY),
    (LEAD, rule("/team/a", C.DENY), rule("/team/a", C.READ), None),
    (ADMIN, rule("/prod/*", C.DENY), rule("/prod/*", C.READ), None),
    # ... and so does shortening it, or giving it an expiry.
    (READER, rule("/dev/a", C.DENY), rule("/dev/a", C.DENY, expires_at=HOUR), Refusal.DENY),
    (
        READER,
        rule("/dev/a", C.DENY, expires_at=DAY),
        rule("/dev/a", C.DENY, expires_at=HOUR),
        Refusal.DENY,
    ),
    # Lengthening a deny, or keeping it, lifts nothing.
    (READER, rule("/dev/a", C.DENY, expires_at=HOUR), rule("/dev/a", C.DENY), None),
    (READER, rule("/dev/a", C.DENY, expires_at=HOUR), rule("/dev/a", C.DENY, C.LIST), None),
    # An expired deny takes nothing away any more.
    (READER, rule("/dev/a", C.DENY, expires_at=AGO), rule("/dev/a", C.READ), None),
    # The lead may lift a deny that lasts an hour under /tmp, not one that lasts a day.
    (
        LEAD,
        rule("/tmp/a", C.DENY, expires_at=HOUR),
        rule("/tmp/a", C.LIST, expires_at=HOUR),
        None,
    ),
    (
        LEAD,
        rule("/tmp/a", C.DENY, expires_at=DAY),
        rule("/tmp/a", C.LIST, expires_at=HOUR),
        Refusal.DENY,
    ),
    # Replacing a grant by a narrower one needs only what the new one grants.
    (READER, rule("/dev/a", C.READ, C.UPDATE), rule("/dev/a", C.READ), None),
]


@pytest.mark.parametrize(("caller", "old", "new", "why"), RULE_CHANGES)
def test_check_rule_change(
    caller: RuleSet, old: Rule | None, new: Rule, why: Refusal | None
) -> None:
    outcome = check_rule_change(caller, old, new, NOW, Budget())
    if why is None:
        assert outcome is None
    else:
        assert outcome == Refused(why, old if why is Refusal.DENY and old is not None else new)


STRONG_ROLE = [
    rule("/prod/*", C.READ),
    rule("/admin", C.UPDATE, rule_type=ROLE),
]

# (caller, the role's rules, refused rule index or None): an association hands every rule over.
ASSOCIATIONS = [
    (ADMIN, STRONG_ROLE, None),
    (READER, STRONG_ROLE, 0),
    (READER, [rule("/dev/a", C.READ), rule("/dev/b/+", C.LIST)], None),
    (READER, [rule("/dev/a", C.READ), rule("/dev/+", C.LIST)], 1),  # /dev/secret is one
    # A deny or an expired rule hands nothing over.
    (READER, [rule("/dev/a", C.READ), rule("/*", C.DENY)], None),
    (READER, [rule("/prod/*", C.READ, expires_at=AGO), rule("/dev/b", C.READ)], None),
    # A rule without expiry needs a grant without expiry.
    (LEAD, [rule("/tmp/*", C.READ, expires_at=HOUR)], None),
    (LEAD, [rule("/tmp/*", C.READ)], 0),
    # A template stands for every holder's claim: any single segment.
    (READER, [rule("/dev/{{role_name}}", C.READ)], 0),  # /dev/secret among them
    (LEAD, [rule("/team/{{role_name}}/*", C.READ)], None),
    # Every rule type counts.
    (READER, [rule("/reader", C.UPDATE, rule_type=ROLE)], None),
    (READER, [rule("/reader", C.UPDATE, rule_type=AUTH)], 0),
]


@pytest.mark.parametrize(("caller", "rules", "refused_index"), ASSOCIATIONS)
def test_check_grants(caller: RuleSet, rules: list[Rule], refused_index: int | None) -> None:
    outcome = check_grants(caller, rules, NOW, Budget())
    expected = None if refused_index is None else Refused(Refusal.GRANT, rules[refused_index])
    assert outcome == expected


# (caller, rules taken away, refused rule index or None): deleting a role, removing an
# association or a rule.
REMOVALS = [
    # Grants may always go.
    (READER, [rule("/prod/*", C.READ), rule("/*", *GRANTABLE, rule_type=ROLE)], None),
    # Attack: the reader deleting the deny that applies to itself.
    (READER, [rule("/dev/secret", C.DENY)], 0),
    # It holds read and list on /dev/* but not every capability there.
    (READER, [rule("/dev/a", C.DENY)], 0),
    (LEAD, [rule("/team/a/*", C.DENY), rule("/team/b", C.READ, C.DENY)], None),
    (LEAD, [rule("/team/a/*", C.DENY), rule("/*", C.DENY)], 1),
    (ADMIN, [rule("/*", C.DENY), rule("/*", C.DENY, rule_type=AUTH)], None),
    # The deny lasts longer than the lead's hour under /tmp.
    (LEAD, [rule("/tmp/a", C.DENY, expires_at=HOUR)], None),
    (LEAD, [rule("/tmp/a", C.DENY)], 0),
    # Expired denies take nothing away.
    (READER, [rule("/dev/secret", C.DENY, expires_at=AGO)], None),
    # A templated deny covers every holder's segment.
    (LEAD, [rule("/team/{{role_name}}", C.DENY)], None),
    (LEAD, [rule("/{{role_name}}/x", C.DENY)], 0),
]


@pytest.mark.parametrize(("caller", "rules", "refused_index"), REMOVALS)
def test_check_removal(caller: RuleSet, rules: list[Rule], refused_index: int | None) -> None:
    outcome = check_removal(caller, rules, NOW, Budget())
    expected = None if refused_index is None else Refused(Refusal.DENY, rules[refused_index])
    assert outcome == expected


@pytest.mark.parametrize(
    ("old", "new", "weakens"),
    [
        (rule("/a", C.DENY), rule("/a", C.READ), True),
        (rule("/a", C.DENY), rule("/a", C.DENY), False),
        (rule("/a", C.DENY), rule("/a", C.DENY, expires_at=DAY), True),
        (rule("/a", C.DENY, expires_at=DAY), rule("/a", C.DENY, expires_at=HOUR), True),
        (rule("/a", C.DENY, expires_at=HOUR), rule("/a", C.DENY, expires_at=HOUR), False),
        (rule("/a", C.DENY, expires_at=HOUR), rule("/a", C.DENY), False),
        (rule("/a", C.DENY, expires_at=AGO), rule("/a", C.READ), False),
        (rule("/a", C.READ), rule("/a", C.LIST), False),
    ],
)
def test_weakens_deny(old: Rule, new: Rule, weakens: bool) -> None:
    assert weakens_deny(old, new, NOW) is weakens


# Attack: six PUTs of wildcard-dense rules into the caller's own role made every later
# check explore the subset construction of their union, 2 to 5 s each on the event loop.
# Here the dense patterns are denies (which need no grant, so nothing stops writing them)
# and grants under a broad rule; either way the check gives up within its budget.
_DENSE = ["/*" + "*".join(order) + "*/x" for order in itertools.permutations("abcdef")][::37][:8]


def test_a_crafted_rule_set_is_refused_within_the_budget() -> None:
    denies = RuleSet([rule("/*", C.READ), *(rule(p, C.DENY) for p in _DENSE)], {})
    budget = Budget()
    with pytest.raises(RuleTooComplexError):
        denies.covers(ITEM, "/+", frozenset({C.READ}), NOW, budget=budget)
    assert budget.left < 0
    orders = list(itertools.permutations("abcde"))[::7][:8]
    grants = RuleSet([rule("/*" + "*".join(order) + "*", C.READ) for order in orders], {})
    with pytest.raises(RuleTooComplexError):
        grants.covers(ITEM, "/*a*b*c*d*e*x", frozenset({C.READ}), NOW)


def test_real_rule_sets_spend_little_of_the_budget() -> None:
    rules = [rule(f"/team-{i}/{{{{role_name}}}}/*", C.READ, C.LIST) for i in range(100)]
    rules += [rule(f"/team-{i}/shared/+", *GRANTABLE) for i in range(100)]
    rules += [rule("/team-7/shared/keys", C.DENY), rule("/*", C.LIST)]
    caller = RuleSet(rules, {"role_name": "web"})
    budget = Budget()
    assert caller.covers(ITEM, "/team-3/web/db/*", frozenset({C.READ}), NOW, budget=budget)
    assert caller.covers(ITEM, "/team-3/shared/+", GRANTABLE, NOW, budget=budget)
    assert not caller.covers(ITEM, "/team-7/shared/+", GRANTABLE, NOW, budget=budget)
    assert not caller.covers(ITEM, "/team-3/*", frozenset({C.READ}), NOW, budget=budget)
    assert budget.spent < CHECK_BUDGET_STEPS // 20
