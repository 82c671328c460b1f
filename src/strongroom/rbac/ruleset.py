"""The rules of one token, compiled once: access decisions and the no-escalation check.

Decision for ``(rule_type, path)`` at ``now`` (SPEC section 4): every unexpired rule of that
type whose pattern matches counts. If any of them holds ``deny``, nothing is allowed;
otherwise the answer is the union of their capabilities, with ``list`` added whenever anything
is granted. No matching rule, nothing allowed. Rules are not ranked by specificity: a broad
deny beats a narrow grant, unlike OpenBao, where the most specific pattern alone decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import chain

from strongroom.rbac.automaton import UNIVERSE, contained, intersects
from strongroom.rbac.budget import Budget
from strongroom.rbac.capability import (
    BIT,
    DECISION,
    DENY_BIT,
    GRANT_BITS,
    Capability,
    RuleType,
    mask_of,
)
from strongroom.rbac.pattern import BoundToken, bind, compile_bound, parse_rule_path
from strongroom.rbac.rule import Rule

_NOTHING: frozenset[Capability] = frozenset()
_Bound = tuple[BoundToken, ...]
_FullMatch = Callable[[str], re.Match[str] | None]


class _TypeIndex:
    """The rules of one type, laid out so that a decision runs few regexes.

    Exact paths sit in a dict. A wildcard pattern whose first segment is literal (``/dev/*``)
    is filed under that segment, since it can only match paths that start with it; the rest
    (``/*``, ``/+/x``, ``/dev*``) are tried on every path.
    """

    __slots__ = ("anywhere", "bound", "first_expiry", "literal", "under_first_segment")

    def __init__(self, by_pattern: Mapping[tuple[_Bound, datetime | None], int]) -> None:
        self.literal: dict[str, list[tuple[int, datetime | None]]] = {}
        self.under_first_segment: dict[str, list[tuple[_FullMatch, int, datetime | None]]] = {}
        self.anywhere: list[tuple[_FullMatch, int, datetime | None]] = []
        self.bound = [(bound, bits, expires_at) for (bound, expires_at), bits in by_pattern.items()]
        for bound, bits, expires_at in self.bound:
            prefix = bound[0]
            if len(bound) == 1 and isinstance(prefix, str):
                self.literal.setdefault(prefix, []).append((bits, expires_at))
                continue
            entry = (compile_bound(bound).fullmatch, bits, expires_at)
            # A bound pattern starts with the literal "/"; see whether a whole segment follows.
            if isinstance(prefix, str) and (end := prefix.find("/", 1)) > 0:
                self.under_first_segment.setdefault(prefix[1:end], []).append(entry)
            else:
                self.anywhere.append(entry)
        expiries = [expires_at for _, _, expires_at in self.bound if expires_at is not None]
        # Until the first expiry every rule is live, and the loop can skip the comparisons.
        self.first_expiry = min(expiries, default=None)


class RuleSet:
    """The compiled rules of one caller, bound to that caller's claims.

    Build it once per (roles, rules generation, claims) and share it: it is immutable. Raises
    InvalidRequestError if a rule's path is not a valid pattern; rules are validated when they
    are written, so that means damaged storage, and dropping the rule could drop a deny.
    """

    __slots__ = ("_index",)

    def __init__(self, rules: Iterable[Rule], claims: Mapping[str, str]) -> None:
        merged: dict[RuleType, dict[tuple[_Bound, datetime | None], int]] = {}
        for rule in rules:
            rule_type = RuleType(rule.rule_type)
            bound = bind(parse_rule_path(rule.path, rule_type).tokens, claims)
            bits = mask_of(rule.capabilities)
            if bound is None or not bits:
                continue  # a template this caller's claims cannot fill matches nothing
            # Rules with one pattern and one expiry act as one: merging keeps the loop short.
            same = merged.setdefault(rule_type, {})
            same[bound, rule.expires_at] = same.get((bound, rule.expires_at), 0) | bits
        self._index = {rule_type: _TypeIndex(same) for rule_type, same in merged.items()}

    def allowed(self, rule_type: RuleType, path: str, now: datetime) -> frozenset[Capability]:
        """The capabilities held on ``path`` at ``now`` (timezone-aware); never ``deny``.

        ``path`` should be canonical (see :mod:`strongroom.kit.names`): patterns are matched
        against it as text, so ``/a//b`` or ``/a/../b`` would be matched as written.
        """
        index = self._index.get(rule_type)
        if index is None:
            return _NOTHING
        every_rule_live = index.first_expiry is None or now < index.first_expiry
        mask = 0
        for bits, expires_at in index.literal.get(path, ()):
            if every_rule_live or expires_at is None or expires_at > now:
                mask |= bits
        end = path.find("/", 1)
        first_segment = path[1:end] if end > 0 else path[1:]
        candidates = chain(index.under_first_segment.get(first_segment, ()), index.anywhere)
        for fullmatch, bits, expires_at in candidates:
            if mask & DENY_BIT:
                break  # deny already decided it; no need to run the other regexes
            if (every_rule_live or expires_at is None or expires_at > now) and fullmatch(path):
                mask |= bits
        return DECISION[mask]

    def may(self, capability: Capability, rule_type: RuleType, path: str, now: datetime) -> bool:
        """Whether ``capability`` is held on ``path`` at ``now``; always False for ``deny``."""
        return capability in self.allowed(rule_type, path, now)

    def covers(
        self,
        rule_type: RuleType,
        pattern: str,
        capabilities: frozenset[Capability],
        now: datetime,
        *,
        expires_at: datetime | None = None,
        budget: Budget | None = None,
    ) -> bool:
        """Whether a rule ``(rule_type, pattern, capabilities, expires_at)`` grants nothing the
        caller lacks.

        True only if, for each capability in ``capabilities``, the caller holds it on every
        well-formed path the pattern can match, for any caller's claims (a template in
        ``pattern`` stands for any single segment), from ``now`` until the rule expires: only
        the caller's grants that last at least as long count (for a rule without expiry, only
        grants without expiry), while every deny live at ``now`` counts. ``deny`` only takes
        away, so it needs nothing; ``list`` is held wherever anything is.

        Raises InvalidRequestError if ``pattern`` is not a valid rule path of ``rule_type``,
        and RuleTooComplexError if deciding costs more than ``budget`` (by default a fresh
        :class:`Budget`).
        """
        # Attack: privilege escalation by writing a rule into a role the caller holds, or into
        # a role that others hold, wider than the caller's own access.
        needed = capabilities - {Capability.DENY}
        candidate = parse_rule_path(pattern, rule_type).tokens
        if not needed:
            return True
        index = self._index.get(rule_type)
        if index is None:
            return False
        budget = budget or Budget()
        universe = UNIVERSE[rule_type]
        budget.spend(len(index.bound))
        # Attack: re-setting a rule held only for an hour as a rule that never expires (in the
        # same role or another). Expiry is part of a grant: a grant that lapses sooner covers
        # nothing of the rule's later life.
        lasting = [
            (bound, bits)
            for bound, bits, until in index.bound
            if until is None or (until > now and expires_at is not None and until >= expires_at)
        ]
        denied = [
            bound
            for bound, bits, until in index.bound
            if bits & DENY_BIT and (until is None or until > now)
        ]
        # A deny anywhere under the pattern means the caller lacks everything there.
        if denied and intersects(candidate, denied, universe, budget):
            return False
        for capability in sorted(needed):
            wanted = GRANT_BITS if capability == Capability.LIST else BIT[capability]
            holders = [bound for bound, bits in lasting if bits & wanted and not bits & DENY_BIT]
            if not contained(candidate, holders, universe, budget):
                return False
        return True
