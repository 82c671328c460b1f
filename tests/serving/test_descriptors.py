"""presize_descriptor_table, seen from a child process of its own (FDSize in /proc)."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest

from tests.support.child import child_json

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="FDSize is Linux's /proc"
)

CHILD = """
import json, os, resource, sys
soft = int(sys.argv[1])
if soft:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
from strongroom.serving.descriptors import presize_descriptor_table

def fd_size():
    for line in open("/proc/self/status"):
        if line.startswith("FDSize:"):
            return int(line.split()[1])

before = fd_size()
highest = presize_descriptor_table(int(sys.argv[2]))
print(json.dumps({
    "before": before,
    "after": fd_size(),
    "highest": highest,
    "open": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}))
"""


def presized(soft_limit: int, slots: int) -> dict[str, Any]:
    return child_json(CHILD, str(soft_limit), str(slots))


def test_the_table_is_grown_to_the_slots_asked_for_and_nothing_stays_open() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit here is {hard}")
    seen = presized(4096, 4096)
    assert seen["before"] < 4096
    assert seen["after"] >= 4096
    assert seen["highest"] == 4095
    # Only what a Python process has anyway (0-2, the /proc listing's own descriptor).
    assert all(fd < 10 for fd in seen["open"])


def test_the_soft_descriptor_limit_caps_it() -> None:
    seen = presized(1024, 4096)
    assert seen["highest"] == 1023
    assert 1024 <= seen["after"] < 4096
