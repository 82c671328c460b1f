"""The fixed budget of one no-escalation check (SPEC section 4).

Deciding whether one pattern language is contained in a union of others is exponential in the
worst case (the subset construction of the union). A rule author must not be able to make the
server spend seconds on it: every check of one change draws on one :class:`Budget`, counted in
elementary steps of the automaton search (a set element visited, a symbol tried), and raises
:class:`~strongroom.errors.RuleTooComplexError` the moment it runs out. Steps rather than
seconds, so that a check's outcome does not depend on how busy the machine is, and a change
that passes on one replica passes on every one.

:data:`CHECK_BUDGET_STEPS` was measured with ``bench/rule_check.py``: the worst case found
runs out in about 30 ms on one core of the reference machine, and real rule sets (tens of
rules, a few wildcards each) spend well under 1 % of it.
"""

from __future__ import annotations

from strongroom.errors import RuleTooComplexError

CHECK_BUDGET_STEPS = 400_000


class Budget:
    """Steps a check may still take; :meth:`spend` raises RuleTooComplexError past zero."""

    __slots__ = ("left", "steps")

    def __init__(self, steps: int = CHECK_BUDGET_STEPS) -> None:
        self.steps = steps
        self.left = steps

    def spend(self, steps: int) -> None:
        """Take ``steps`` from the budget; raise RuleTooComplexError when it is exhausted."""
        self.left -= steps
        if self.left < 0:
            # Attack: a rule set crafted so that deciding coverage takes seconds of CPU.
            raise RuleTooComplexError(
                reason=f"no-escalation check exceeded its budget of {self.steps} steps"
            )

    @property
    def spent(self) -> int:
        return self.steps - self.left
