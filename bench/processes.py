"""Process handling shared by the benchmarks: every process a benchmark starts runs in its own
process group, so it can be stopped (and its CPU counted) with everything it spawned."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


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


def free_port(*, with_next: bool = False) -> int:
    """A free loopback port (and the one after it free too, for OpenBao's cluster port)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if not with_next:
            return port
        try:
            with socket.socket() as sock:
                sock.bind((LOOPBACK, port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(
    process: subprocess.Popen[Any], url: str, log_path: Path, timeout: float = 60.0
) -> None:
    """Poll ``url`` until it answers 200; raise (with the log's tail) if the process exits
    first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited early (code {process.returncode}):\n{tail(log_path)}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {timeout:.0f} s:\n{tail(log_path)}")


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    cpu_ticks: int  # user + system


def _proc_stat(pid: int | str) -> ProcStat | None:
    """What /proc/<pid>/stat says now; None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; ppid is 4, pgrp 5, utime 14, stime 15.
    ticks = int(fields[11]) + int(fields[12])
    return ProcStat(int(pid), int(fields[1]), int(fields[2]), ticks)


def proc_stats() -> Iterator[ProcStat]:
    """What /proc says of every process now (those gone meanwhile are skipped)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(entry.name)) is not None:
            yield stat


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and every live process descended from it (a server's
    login processes run in sessions, hence process groups, of their own)."""
    stats = {stat.pid: stat for stat in proc_stats()}
    total = sum(stats[pid].cpu_ticks for pid in _descendants(root, stats))
    return total / os.sysconf("SC_CLK_TCK")


def _descendants(root: int, stats: dict[int, ProcStat]) -> list[int]:
    """``root`` and every process in ``stats`` descended from it."""
    found = []
    for stat in stats.values():
        ancestor = stat.pid
        while ancestor > 1 and ancestor != root:
            ancestor = stats[ancestor].ppid if ancestor in stats else 0
        if ancestor == root:
            found.append(stat.pid)
    return found


def pids_cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of the live processes ``pids`` (those gone are skipped)."""
    ticks = sum(stat.cpu_ticks for pid in pids if (stat := _proc_stat(pid)) is not None)
    return ticks / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in process group ``pgid``."""
    ticks = sum(stat.cpu_ticks for stat in proc_stats() if stat.pgrp == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_pids(root: int) -> list[int]:
    """``root`` and every live process descended from it."""
    return _descendants(root, {stat.pid: stat for stat in proc_stats()})


def run_queue_wait_seconds(pids: Iterable[int]) -> float:
    """Time the threads of ``pids`` spent runnable but waiting for a CPU (schedstat), so far.

    Its growth over a window says whether those processes were slowed by other work on the
    cores (0 where the kernel keeps no schedstats).
    """
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


class IdleCpuGroup:
    """A CPU cgroup with ``cpu.idle`` set, for a benchmark's load generators.

    A task of an idle group gives up its core as soon as any task outside it wakes up, across
    CPU groups too; a nice value or the SCHED_IDLE policy does that only within one group, and
    where each session is a group of its own (autogroup) a waking server worker waited up to
    25 ms behind a nice-19 stub STS (``perf sched``). Needs a writable cgroup v1 ``cpu``
    hierarchy or cgroup v2 with the cpu controller (root, or a delegated subtree);
    :meth:`create` returns None where neither is available.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> IdleCpuGroup | None:
        for parent in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
            if not (parent / "cpu.idle").exists() and not (parent / "cgroup.procs").exists():
                continue
            path = parent / f"{name}-{os.getpid()}"
            try:
                path.mkdir(exist_ok=True)
                (path / "cpu.idle").write_text("1")
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path)
        return None

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Move what is left in the group back to its parent, then delete the group."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.path.parent / "cgroup.procs").write_text(pid)
            self.path.rmdir()
