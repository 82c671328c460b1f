"""Process metrics for every process of the server, read from Linux's ``/proc`` at each scrape.

The process serving ``/metrics`` reports the supervisor and each of its children (workers and
login processes, named by the titles the supervisor gives them), one series per process,
labelled ``kind`` (``supervisor``, ``worker``, ``login_process``) and ``index``:

- ``strongroom_process_cpu_seconds_total``: user and system CPU time;
- ``strongroom_process_resident_memory_bytes``, ``strongroom_process_virtual_memory_bytes``;
- ``strongroom_process_start_time_seconds``: since the Unix epoch (a restart shows here);
- ``strongroom_process_open_fds``, ``strongroom_process_max_fds``.

An app that runs in its caller's process (tests, tools) reports that process alone, as
``kind="app"``. A process that ends while it is read is left out; elsewhere than Linux there
is nothing to read and nothing is reported. Parsing is pure (:func:`parse_stat`,
:func:`parse_title`); the reads are :class:`ServerProcesses`' alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PROC = Path("/proc")
_TITLE = re.compile(r".+: (?:(supervisor)|(worker|login process) (\d{1,4}))")


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` used here (times in clock ticks, sizes as given)."""

    ppid: int
    utime: int
    stime: int
    starttime: int
    vsize: int
    rss_pages: int


def parse_stat(text: str) -> Stat:
    """Parse ``/proc/<pid>/stat``; ValueError if it is not one.

    The command name (field 2) is in parentheses and may hold spaces and parentheses itself:
    the fields are counted after its last closing parenthesis.
    """
    _, paren, rest = text.rpartition(")")
    if not paren:
        raise ValueError("no command name")
    fields = rest.split()
    # fields[0] is field 3 (state): field n is fields[n - 3].
    return Stat(
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        starttime=int(fields[19]),
        vsize=int(fields[20]),
        rss_pages=int(fields[21]),
    )


def parse_title(cmdline: bytes) -> tuple[str, str] | None:
    """``(kind, index)`` from a server process's title ("strongroom: worker 2"); None for any
    other command line."""
    text = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    match = _TITLE.fullmatch(text)
    if match is None:
        return None
    if match.group(1):
        return "supervisor", "0"
    return match.group(2).replace(" ", "_"), match.group(3)


def parse_max_fds(limits: str) -> int | None:
    """The soft limit of open files in ``/proc/<pid>/limits``; None when unlimited or absent."""
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    index: str
    stat: Stat
    open_fds: int | None
    max_fds: int | None


class ServerProcesses(Collector):
    """Collects the metrics above; ``supervisor``: its pid, or None for the caller's process."""

    def __init__(self, supervisor: int | None, proc: Path = PROC) -> None:
        self._supervisor = supervisor
        self._proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._boot: float | None = None

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        samples = list(self._samples())
        labels = ["kind", "index"]
        cpu = CounterMetricFamily(
            "strongroom_process_cpu_seconds", "CPU time of each server process", labels=labels
        )
        rss = GaugeMetricFamily(
            "strongroom_process_resident_memory_bytes",
            "Resident memory of each server process",
            labels=labels,
        )
        vsize = GaugeMetricFamily(
            "strongroom_process_virtual_memory_bytes",
            "Virtual memory of each server process",
            labels=labels,
        )
        started = GaugeMetricFamily(
            "strongroom_process_start_time_seconds",
            "Start of each server process, seconds since the Unix epoch",
            labels=labels,
        )
        fds = GaugeMetricFamily(
            "strongroom_process_open_fds", "Open descriptors of each server process", labels=labels
        )
        max_fds = GaugeMetricFamily(
            "strongroom_process_max_fds",
            "Descriptor limit (soft) of each server process",
            labels=labels,
        )
        boot = self._boot_time()
        for sample in samples:
            key = [sample.kind, sample.index]
            stat = sample.stat
            cpu.add_metric(key, (stat.utime + stat.stime) / self._ticks)
            rss.add_metric(key, stat.rss_pages * self._page)
            vsize.add_metric(key, stat.vsize)
            if boot is not None:
                started.add_metric(key, boot + stat.starttime / self._ticks)
            if sample.open_fds is not None:
                fds.add_metric(key, sample.open_fds)
            if sample.max_fds is not None:
                max_fds.add_metric(key, sample.max_fds)
        yield from (cpu, rss, vsize, started, fds, max_fds)

    def _pids(self) -> Iterable[tuple[int, tuple[str, str] | None]]:
        if self._supervisor is None:
            yield os.getpid(), ("app", "0")
            return
        yield self._supervisor, ("supervisor", "0")
        # The supervisor forks from its one thread: its children are all listed here.
        children = self._proc / str(self._supervisor) / "task" / str(self._supervisor) / "children"
        try:
            listed = children.read_text().split()
        except OSError:
            return
        for pid in listed:
            try:
                title = parse_title((self._proc / pid / "cmdline").read_bytes())
            except OSError:
                continue
            yield int(pid), title

    def _samples(self) -> Iterator[Sample]:
        for pid, title in self._pids():
            if title is None:
                continue  # not one of ours (or it changed its title since): left out
            base = self._proc / str(pid)
            try:
                stat = parse_stat((base / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
            try:
                open_fds: int | None = len(os.listdir(base / "fd"))
            except OSError:
                open_fds = None
            try:
                limit = parse_max_fds((base / "limits").read_text())
            except OSError:
                limit = None
            yield Sample(title[0], title[1], stat, open_fds, limit)

    def _boot_time(self) -> float | None:
        if self._boot is None:
            try:
                for line in (self._proc / "stat").read_text().splitlines():
                    if line.startswith("btime "):
                        self._boot = float(line.split()[1])
            except (OSError, ValueError):
                return None
        return self._boot
