"""How a login process yields the CPU (``login_process.lower_priority``), each case in a child
process of its own (the change cannot be undone in this one): the policy, nice value, session
and CPU group it ends up with, seen from the child itself."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.child import child_json

pytestmark = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE"), reason="scheduling policies are Linux's"
)

CHILD = """
import json, os, sys
from pathlib import Path
if sys.argv[2] == "refused":
    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")
    os.sched_setscheduler = refuse
from strongroom.serving.login_process import lower_priority
before = os.getsid(0)
how = lower_priority(10, idle=sys.argv[1] == "idle")
# Empty for a task of the root CPU group (init's session, where CI may run): no nice to read.
autogroup = Path("/proc/self/autogroup")
group = autogroup.read_text().split() if autogroup.exists() else []
print(json.dumps({
    "how": how,
    "policy": os.sched_getscheduler(0),
    "nice": os.getpriority(os.PRIO_PROCESS, 0),
    "own_session": os.getsid(0) == os.getpid(),
    "same_session": os.getsid(0) == before,
    "autogroup_nice": group[-1] if group else None,
}))
"""


def lowered(scheduling: str, setup: str = "") -> dict[str, Any]:
    return child_json(CHILD, scheduling, setup or "-")


def test_idle_is_sched_idle_in_the_callers_session() -> None:
    seen = lowered("idle")
    assert seen["how"] == "idle"
    assert seen["policy"] == os.SCHED_IDLE
    assert seen["same_session"] is True  # a waking worker of this CPU group preempts it
    assert seen["nice"] == os.getpriority(os.PRIO_PROCESS, 0)  # untouched: SCHED_IDLE rules


def test_nice_is_a_lower_priority_in_a_session_and_cpu_group_of_its_own() -> None:
    seen = lowered("nice")
    assert seen["how"] == "nice"
    assert seen["policy"] == os.SCHED_OTHER
    assert seen["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert seen["own_session"] is True
    if seen["autogroup_nice"] is not None:  # kernels built with autogroup
        assert seen["autogroup_nice"] == "10"


def test_idle_refused_falls_back_to_nice() -> None:
    seen = lowered("idle", "refused")
    assert seen["how"] == "nice"
    assert seen["policy"] == os.SCHED_OTHER
    assert seen["nice"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert seen["own_session"] is True
