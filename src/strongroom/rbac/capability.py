"""Capabilities and rule types, and the bitmask form the decision loop works on.

A rule grants a set of :class:`Capability` values on the paths its pattern matches. ``deny``
is not a grant but a veto: any matching rule that holds it empties the decision (SPEC
section 4). ``list`` is implied by every other grant, so it never has to be spelled out.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from strongroom.errors import InvalidRequestError


class Capability(StrEnum):
    READ = "read"
    LIST = "list"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    DENY = "deny"


class RuleType(StrEnum):
    """What a rule's path names: items, auth methods, roles or the audit log."""

    ITEM = "item-rule"
    AUTH_METHOD = "auth-method-rule"
    ROLE = "role-rule"
    AUDIT = "audit-rule"


# One bit per capability, so that a decision is an OR over matching rules and a table lookup.
BIT: dict[Capability, int] = {capability: 1 << i for i, capability in enumerate(Capability)}
DENY_BIT = BIT[Capability.DENY]
LIST_BIT = BIT[Capability.LIST]
GRANT_BITS = sum(BIT.values()) - DENY_BIT


def mask_of(capabilities: Iterable[Capability]) -> int:
    """The bitmask of a capability set."""
    mask = 0
    for capability in capabilities:
        mask |= BIT[capability]
    return mask


def _decide(mask: int) -> frozenset[Capability]:
    # Deny wins over every grant; any grant implies list; deny itself is never reported.
    if mask & DENY_BIT or not mask & GRANT_BITS:
        return frozenset()
    return frozenset(c for c, bit in BIT.items() if mask & bit) | {Capability.LIST}


# Every possible decision, computed once: the hot path ends in one list index.
DECISION: tuple[frozenset[Capability], ...] = tuple(_decide(m) for m in range(1 << len(BIT)))


def parse_capabilities(unverified: Iterable[str]) -> frozenset[Capability]:
    """Return the capabilities named in ``unverified``; raise InvalidRequestError if any name
    is unknown or the collection is empty."""
    if isinstance(unverified, str | bytes):
        # A bare "read" is iterable too; reading it as {"r", "e", "a", "d"} would only confuse.
        raise InvalidRequestError("capabilities must be a list of names, not a single string")
    known = ", ".join(Capability)
    parsed: set[Capability] = set()
    for name in unverified:
        try:
            parsed.add(Capability(name))
        except ValueError:
            # Echo at most a short prefix: the name is untrusted and may be huge.
            shown = repr(name)[:40]
            raise InvalidRequestError(f"unknown capability {shown}; known: {known}") from None
    if not parsed:
        raise InvalidRequestError(f"a rule needs at least one capability of: {known}")
    return frozenset(parsed)
