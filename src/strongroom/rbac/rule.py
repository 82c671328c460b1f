"""A rule as stored: a typed path pattern, the capabilities it grants, and when it lapses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from strongroom.rbac.capability import Capability, RuleType


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of an access role.

    ``path`` is a pattern (see :mod:`strongroom.rbac.pattern`); ``expires_at`` is
    timezone-aware, and a rule whose ``expires_at`` is at or before ``now`` counts for nothing.
    Raises ValueError for a naive ``expires_at``, which could not be compared safely.
    """

    rule_type: RuleType
    path: str
    capabilities: frozenset[Capability]
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError("Rule.expires_at must be timezone-aware")

    def live(self, now: datetime) -> bool:
        """Whether the rule still counts at ``now``."""
        return self.expires_at is None or self.expires_at > now
