"""How many CPUs this process may use: its CPU affinity, and the CPU quota of its cgroup and
every ancestor (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).

A container limited to two CPUs on a 64-core host still sees 64 in ``os.cpu_count()``; a
worker per core would then mostly wait for its quota (and be throttled for the rest of each
period when they all run). Everything here is pure but :func:`available_cpus`' default
``read``, the one place that touches ``/proc`` and ``/sys``.

Where the files are: ``/proc/self/cgroup`` names the process's cgroup in each hierarchy
(``0::/path`` for v2; ``N:cpu,cpuacct:/path`` for v1's CPU controller) and
``/proc/self/mountinfo`` where each hierarchy is mounted, and which of its cgroups the mount
shows at its top (a container's own, without a cgroup namespace).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal


@dataclass(frozen=True)
class CpuControl:
    """A cgroup directory whose CPU quota applies to this process."""

    version: Literal[1, 2]
    directory: PurePosixPath


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"200000 100000"`` → 2.0); None: no limit."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1's CFS quota and period; None: no limit (quota -1)."""
    return _ratio(quota_text.strip(), period_text.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as octal escapes (``\040``)."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def cpu_controls(proc_self_cgroup: str, mountinfo: str) -> list[CpuControl]:
    """The cgroup directories whose CPU quota limits this process, innermost first.

    ``proc_self_cgroup`` and ``mountinfo`` are the texts of ``/proc/self/cgroup`` and
    ``/proc/self/mountinfo``. Hierarchies that are not mounted here contribute nothing.
    """
    # (version, mount root, mount point) of the cgroup2 mount and of v1's CPU controller.
    mounts: dict[int, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields, described = before.split(), after.split()
        if not separator or len(fields) < 5 or len(described) < 3:
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if described[0] == "cgroup2":
            mounts.setdefault(2, (root, mount_point))
        elif described[0] == "cgroup" and "cpu" in described[2].split(","):
            mounts.setdefault(1, (root, mount_point))

    controls: list[CpuControl] = []
    for line in proc_self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        version: Literal[1, 2]
        if hierarchy == "0" and controllers == "":
            version = 2
        elif "cpu" in controllers.split(","):
            version = 1
        else:
            continue
        if version not in mounts or not path.startswith("/"):
            continue
        root, mount_point = mounts[version]
        top = PurePosixPath(mount_point)
        inside = PurePosixPath(path)
        try:
            # Without a cgroup namespace a container's mount shows its own cgroup at the top
            # (root = the path); with one, root and path are both "/".
            relative = inside.relative_to(root)
        except ValueError:
            relative = PurePosixPath(".")
        directory = top / relative
        while True:
            controls.append(CpuControl(version, directory))
            if directory == top:
                break
            directory = directory.parent
    return controls


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def available_cpus(
    read: Callable[[str], str | None] = _read_text, affinity: Callable[[], int] = _affinity
) -> float:
    """The CPUs this process may use: the smallest of its affinity and every quota above it."""
    limits = [float(affinity())]
    controls = cpu_controls(read("/proc/self/cgroup") or "", read("/proc/self/mountinfo") or "")
    for control in controls:
        if control.version == 2:
            text = read(str(control.directory / "cpu.max"))
            quota = parse_cpu_max(text) if text is not None else None
        else:
            quota_text = read(str(control.directory / "cpu.cfs_quota_us"))
            period_text = read(str(control.directory / "cpu.cfs_period_us"))
            quota = (
                parse_cfs_quota(quota_text, period_text)
                if quota_text is not None and period_text is not None
                else None
            )
        if quota is not None:
            limits.append(quota)
    return min(limits)


def whole_cpus(cpus: float, at_most: int) -> int:
    """Whole CPUs within ``cpus``, at least 1, at most ``at_most``.

    Rounded down: a second worker on a quota of 1.5 CPUs would have both throttled at the end
    of every period in which they are busy together.
    """
    return max(1, min(at_most, math.floor(cpus + 1e-9)))
