"""Where the no-escalation checks of role and auth method changes run (SPEC section 4).

A check (``strongroom.rbac.escalation``) is pure CPU: its cost is capped by a fresh
:class:`~strongroom.rbac.budget.Budget` per change, so a crafted rule set is refused with 400
``RuleTooComplex`` within tens of milliseconds. Even that should not hold up the reads that
share the event loop, so checks run on one thread of their own (``STRONGROOM_RBAC_CHECK_THREAD``,
default on). A thread alone does not keep a pure-Python computation from holding up the
loop (the GIL), so the check also pauses briefly every few thousand steps, and there is one
thread, not a pool: checks of many changes at once queue behind each other instead of each
taking turns with the loop. The database work of a change stays where it was, on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from strongroom.rbac.budget import CHECK_BUDGET_STEPS, Budget

T = TypeVar("T")
# A check on the thread sleeps this long after every PAUSE_EVERY_STEPS steps of its budget
# (about 1 ms of CPU), so that the event loop, if it is waiting for the GIL, takes it at once
# instead of after the interpreter's switch interval (5 ms). A zero sleep is not enough: the
# check thread usually takes the GIL straight back. Measured with bench/rule_check.py
# --server: reads' p50 under a hammering of over-budget PUTs went from about 20 ms to 4.
PAUSE_EVERY_STEPS = 5_000
PAUSE_SECONDS = 0.0001


def _pause() -> None:
    time.sleep(PAUSE_SECONDS)


class EscalationChecks:
    """Runs ``check(budget)`` for one change, on the checks' thread (or inline)."""

    def __init__(self, *, in_thread: bool = True, budget_steps: int = CHECK_BUDGET_STEPS) -> None:
        self._budget_steps = budget_steps
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="rbac-check")
            if in_thread
            else None
        )

    async def run(self, check: Callable[[Budget], T]) -> T:
        """The result of ``check`` with a fresh budget; its exceptions (RuleTooComplexError
        when the budget runs out) propagate. A cancelled caller leaves the check to finish
        within its budget."""
        if self._executor is None:
            return check(Budget(self._budget_steps))
        budget = Budget(self._budget_steps, pause=_pause, pause_every=PAUSE_EVERY_STEPS)
        return await asyncio.get_running_loop().run_in_executor(self._executor, check, budget)

    def close(self) -> None:
        """Stop the thread once the checks under way are done; queued ones are dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
