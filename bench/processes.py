"""Process handling shared by the benchmarks: every process a benchmark starts runs in its own
process group, so it can be stopped (and its CPU counted) with everything it spawned."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


class Processes:
    """Every process this script starts, each in its own session (process group)."""

    def __init__(self) -> None:
        self._live: list[subprocess.Popen[Any]] = []

    def spawn(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self._live.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left of it after ``grace`` seconds.

        The leader is waited for without being reaped (``WNOWAIT``): while it is a zombie its
        pid, and so the group id, cannot be reused, and the final SIGKILL reaches only the
        processes started here (uvicorn workers that outlived their supervisor, say).
        """
        if process in self._live:
            self._live.remove(process)
        if process.returncode is not None:
            return  # already reaped: its group id is no longer ours to signal
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if exited is not None:
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in reversed(list(self._live)):
            self.stop(process, grace=5.0)


PROCS = Processes()


def raise_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and every live process descended from it (a server's
    login processes run in sessions, hence process groups, of their own)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 of proc(5): state; ppid is field 4, utime 14, stime 15.
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, used in times.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            total += used
    return total / ticks


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in process group ``pgid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 of proc(5): state; pgrp is field 5, utime 14, stime 15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks
