"""Access decisions (SPEC section 4): pure, table-tested, no I/O.

Rules are parsed and checked on write (:func:`validate_rule_path`, :func:`parse_capabilities`),
compiled once per caller into a :class:`RuleSet`, and asked on every request
(:meth:`RuleSet.allowed`, :meth:`RuleSet.may`) and on every rule write
(:meth:`RuleSet.covers` and :mod:`strongroom.rbac.escalation`, the no-escalation checks).
Invalid input raises :class:`strongroom.errors.InvalidRequestError`; a check beyond its
budget, :class:`strongroom.errors.RuleTooComplexError`.

    capability.py   Capability, RuleType, the bitmask of a decision
    rule.py         Rule
    pattern.py      pattern grammar: parse, bind claims, compile to a regex
    automaton.py    containment and intersection of pattern languages
    budget.py       Budget: the fixed cost cap of one no-escalation check
    ruleset.py      RuleSet: allowed, may, covers
    escalation.py   what a change grants or lifts, and whether the caller may do it
"""

from strongroom.rbac.capability import Capability, RuleType, parse_capabilities
from strongroom.rbac.pattern import CLAIM_NAMES, validate_new_rule_path, validate_rule_path
from strongroom.rbac.rule import Rule
from strongroom.rbac.ruleset import RuleSet

__all__ = [
    "CLAIM_NAMES",
    "Capability",
    "Rule",
    "RuleSet",
    "RuleType",
    "parse_capabilities",
    "validate_new_rule_path",
    "validate_rule_path",
]
