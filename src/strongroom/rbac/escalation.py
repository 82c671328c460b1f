"""No escalation through any change (SPEC section 4): what a change grants, what it takes away,
and whether the caller could have granted that itself. Pure; the services gather the rules a
change touches and ask here.

A change may let someone gain a capability in three ways, and each has its test:

* it **adds a grant**: a rule set into a role, or every rule of a role that an association
  (or a widened auth method) hands to new logins. The caller must hold each capability of the
  grant on every path its pattern can match, for as long as the grant lasts
  (:func:`may_grant`, built on :meth:`RuleSet.covers`).
* it **lifts a deny**: a rule that holds ``deny`` removed, replaced without ``deny`` or with an
  earlier expiry, or cut off from its holders with its role (deleted) or its association
  (removed). What a deny took away is whatever any rule of its type grants on its paths now
  or later, and which rules those are is not the caller's to know (they change, in roles the
  caller may not read). So the conservative answer: the caller must hold every grantable
  capability (:data:`GRANTABLE`) on every path the deny's pattern can match, until the deny
  would have expired (:func:`may_lift`). A caller can thus never lift a deny that
  applies to itself: its own deny leaves it holding nothing there.
* it **lengthens a grant**: re-setting a rule with a later expiry, or none. That is a grant
  of the longer rule, checked as above with its own expiry.

:func:`check_rule_change`, :func:`check_grants` and :func:`check_removal` put these together
for the services' changes. Each check draws on the request's :class:`Budget` and may raise
:class:`~strongroom.errors.RuleTooComplexError`; malformed stored patterns raise
:class:`~strongroom.errors.InvalidRequestError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from strongroom.rbac.budget import Budget
from strongroom.rbac.capability import Capability
from strongroom.rbac.rule import Rule
from strongroom.rbac.ruleset import RuleSet

# What a deny can take away: every capability a rule can grant.
GRANTABLE = frozenset(Capability) - {Capability.DENY}


def holds_deny(rule: Rule, now: datetime) -> bool:
    """Whether ``rule`` takes something away at ``now`` (an expired deny takes nothing)."""
    return Capability.DENY in rule.capabilities and rule.live(now)


def may_grant(caller: RuleSet, rule: Rule, now: datetime, budget: Budget) -> bool:
    """Whether the caller holds everything ``rule`` grants, for as long as it grants it."""
    if not rule.live(now):
        return True  # an expired rule grants nothing, ever again
    return caller.covers(
        rule.rule_type,
        rule.path,
        rule.capabilities,
        now,
        expires_at=rule.expires_at,
        budget=budget,
    )


def may_lift(caller: RuleSet, rule: Rule, now: datetime, budget: Budget) -> bool:
    """Whether the caller may take ``rule`` away from its holders: always, unless it holds a
    live deny; then only if the caller holds every grantable capability on every path the
    deny can match until it would have expired."""
    if not holds_deny(rule, now):
        return True  # removing a grant never gives anyone more
    return caller.covers(
        rule.rule_type, rule.path, GRANTABLE, now, expires_at=rule.expires_at, budget=budget
    )


def weakens_deny(old: Rule, new: Rule, now: datetime) -> bool:
    """Whether replacing ``old`` by ``new`` (same role, type and path) lifts some of ``old``'s
    deny: ``new`` holds no deny, or its deny lapses before ``old``'s would have."""
    if not holds_deny(old, now):
        return False
    if Capability.DENY not in new.capabilities:
        return True
    if new.expires_at is None:
        return False
    return old.expires_at is None or new.expires_at < old.expires_at


class Refusal(Enum):
    """Why a change was refused: it grants what the caller lacks, or lifts a deny."""

    GRANT = "grant"
    DENY = "deny"


class Refused(NamedTuple):
    """A refused change: why, and the rule that made it so (for the audit reason)."""

    why: Refusal
    rule: Rule


def check_rule_change(
    caller: RuleSet, old: Rule | None, new: Rule, now: datetime, budget: Budget
) -> Refused | None:
    """Setting ``new`` where ``old`` (or nothing) was, in the same role, type and path: the
    caller must hold what ``new`` grants for as long as it lasts, and may lift ``old``'s deny
    (drop it, or shorten it) only as :func:`may_lift` allows. None when allowed."""
    if old is not None and weakens_deny(old, new, now) and not may_lift(caller, old, now, budget):
        return Refused(Refusal.DENY, old)
    if not may_grant(caller, new, now, budget):
        return Refused(Refusal.GRANT, new)
    return None


def check_grants(
    caller: RuleSet, rules: Iterable[Rule], now: datetime, budget: Budget
) -> Refused | None:
    """Handing ``rules`` to new holders (associating their role with an auth method, or
    widening who logs in through one): the caller must hold every grant among them, for as
    long as each lasts. None when allowed."""
    for rule in rules:
        if not may_grant(caller, rule, now, budget):
            return Refused(Refusal.GRANT, rule)
    return None


def check_removal(
    caller: RuleSet, rules: Iterable[Rule], now: datetime, budget: Budget
) -> Refused | None:
    """Taking ``rules`` away from their holders (removing a rule, deleting its role, removing
    an association of its role): allowed unless one holds a deny that the caller may not lift
    (:func:`may_lift`). None when allowed."""
    for rule in rules:
        if not may_lift(caller, rule, now, budget):
            return Refused(Refusal.DENY, rule)
    return None
