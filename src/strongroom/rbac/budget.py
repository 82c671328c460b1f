"""The fixed budget of one no-escalation check (SPEC section 4).

Deciding whether one pattern language is contained in a union of others is exponential in the
worst case (the subset construction of the union). A rule author must not be able to make the
server spend seconds on it: every check of one change draws on one :class:`Budget`, counted in
elementary steps of the automaton search (a set element visited, a symbol tried), and raises
:class:`~strongroom.errors.RuleTooComplexError` the moment it runs out. Steps rather than
seconds, so that a check's outcome does not depend on how busy the machine is, and a change
that passes on one replica passes on every one.

:data:`CHECK_BUDGET_STEPS` was measured with ``bench/rule_check.py`` (crafted families grown
until they run out): the most costly check found, whether it finishes within the budget or
runs out of it, takes about 30 ms of one core's CPU; a role of 200 rules with templates and
a deny spends a few percent of it. The costs are charged so that a step takes about the same
time in every part of the search (70 to 250 ns here).
"""

from __future__ import annotations

from collections.abc import Callable

from strongroom.errors import RuleTooComplexError

CHECK_BUDGET_STEPS = 150_000


class Budget:
    """Steps a check may still take; :meth:`spend` raises RuleTooComplexError past zero.

    ``pause``, if given, is called after every ``pause_every`` steps: the caller's chance to
    let other threads run (a check holds the GIL while it computes).
    """

    __slots__ = ("_next_pause", "_pause", "_pause_every", "left", "steps")

    def __init__(
        self,
        steps: int = CHECK_BUDGET_STEPS,
        *,
        pause: Callable[[], None] | None = None,
        pause_every: int = 10_000,
    ) -> None:
        self.steps = steps
        self.left = steps
        self._pause = pause
        self._pause_every = pause_every
        self._next_pause = steps - pause_every

    def spend(self, steps: int) -> None:
        """Take ``steps`` from the budget; raise RuleTooComplexError when it is exhausted."""
        self.left -= steps
        if self._pause is not None and self.left <= self._next_pause:
            self._next_pause = self.left - self._pause_every
            self._pause()
        if self.left < 0:
            # Attack: a rule set crafted so that deciding coverage takes seconds of CPU.
            raise RuleTooComplexError(
                reason=f"no-escalation check exceeded its budget of {self.steps} steps"
            )

    @property
    def spent(self) -> int:
        return self.steps - self.left
