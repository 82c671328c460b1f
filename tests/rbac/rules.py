"""What the rbac tests build rules from: short names of the rule types, a fixed now, and
:func:`rule`."""

from __future__ import annotations

from datetime import UTC, datetime

from strongroom.rbac import Capability, Rule, RuleType

C = Capability
ITEM, ROLE, AUTH, AUDIT = RuleType.ITEM, RuleType.ROLE, RuleType.AUTH_METHOD, RuleType.AUDIT
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def rule(
    path: str,
    *capabilities: Capability,
    rule_type: RuleType = ITEM,
    expires_at: datetime | None = None,
) -> Rule:
    """A rule of ``rule_type`` (an item rule by default) granting ``capabilities``."""
    return Rule(rule_type, path, frozenset(capabilities), expires_at)
