"""Where the no-escalation checks run: on a thread of their own, within their budget."""

from __future__ import annotations

import asyncio
import threading

import pytest

from strongroom.errors import RuleTooComplexError
from strongroom.rbac.budget import Budget
from strongroom.roles import checks
from strongroom.roles.checks import EscalationChecks


def _where(budget: Budget) -> tuple[str, int]:
    return threading.current_thread().name, budget.steps


def test_checks_run_on_their_own_thread_with_a_fresh_budget() -> None:
    runner = EscalationChecks(budget_steps=1234)
    try:
        name, steps = asyncio.run(runner.run(_where))
    finally:
        runner.close()
    assert name.startswith("rbac-check")
    assert steps == 1234


def test_checks_run_inline_when_the_thread_is_switched_off() -> None:
    runner = EscalationChecks(in_thread=False)
    name, _steps = asyncio.run(runner.run(_where))
    assert name == threading.current_thread().name


def test_a_check_beyond_its_budget_raises_to_the_caller() -> None:
    def costly(budget: Budget) -> None:
        budget.spend(budget.steps + 1)

    runner = EscalationChecks(budget_steps=10)
    try:
        with pytest.raises(RuleTooComplexError):
            asyncio.run(runner.run(costly))
    finally:
        runner.close()


def test_a_check_on_the_thread_pauses_every_few_thousand_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pause is what lets the event loop take the GIL back at once (see the module).
    pauses: list[int] = []

    def work(budget: Budget) -> None:
        for _ in range(25):
            budget.spend(1_000)
            pauses.append(-1)

    monkeypatch.setattr(checks, "PAUSE_EVERY_STEPS", 5_000)
    monkeypatch.setattr(checks, "_pause", lambda: pauses.append(1))
    runner = EscalationChecks(budget_steps=100_000)
    try:
        asyncio.run(runner.run(work))
    finally:
        runner.close()
    assert pauses.count(1) == 5
    inline: list[int] = []
    monkeypatch.setattr(checks, "_pause", lambda: inline.append(1))
    asyncio.run(EscalationChecks(in_thread=False).run(work))
    assert inline == []  # never sleep on the event loop itself
