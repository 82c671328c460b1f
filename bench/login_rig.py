"""What a login benchmark run drives and reads: the ``strongroom server`` under test, the
helper processes (the stub STS and the readers, ``login.py``'s hidden modes), py-spy, and the
probes of the machine (/proc), of the server (its /metrics page) and of its audit trail.

``login.py`` runs the phases with these; ``login_report.py`` turns the results into the table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from aws_sts import DelayedSts, identity_xml
from processes import Processes, free_port, tail, tree_cpu_seconds, tree_pids

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
STRONGROOM = str(VENV_BIN / "strongroom") if (VENV_BIN / "strongroom").exists() else "strongroom"
LOOPBACK = "127.0.0.1"
# The helper processes are login.py in a hidden mode (--_stub-sts, --_readers).
LOGIN_SCRIPT = BENCH_DIR / "login.py"


def log(message: str) -> None:
    print(f"[login-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


PROCS = Processes()


class Profiler:
    """``py-spy record`` of the server's process tree (workers included), collapsed stacks.

    Started and stopped around one phase with ``--profile``; it samples without pausing the
    workers (``--nonblocking``) so the figures it shadows are only slightly disturbed.
    """

    def __init__(self, pid: int, output: Path, mode: str = "cpu", rate: int = 500) -> None:
        self.output = output
        py_spy = VENV_BIN / "py-spy"
        self.command = [
            str(py_spy if py_spy.exists() else "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            # cpu: only the thread holding the GIL (where CPU goes); wall: every thread, idle
            # ones too (where requests wait).
            "--gil" if mode == "cpu" else "--idle",
            "--threads",
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--output",
            str(output),
        ]
        self._log = output.with_suffix(".log").open("wb")
        self.process = PROCS.spawn(self.command, stdout=self._log, stderr=self._log)
        time.sleep(1.0)  # let it attach

    def stop(self) -> Path:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        PROCS.stop(self.process)
        self._log.close()
        return self.output


def cpu_jiffies() -> list[int]:
    """The all-CPUs line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal…"""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = cpu_jiffies()
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return float(total - idle), float(total)


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others while this machine's CPUs wanted it, so far."""
    fields = cpu_jiffies()
    return fields[7] / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else 0.0


def set_autogroup_nice(pid: str, nice: int) -> int | None:
    """Set the nice value of ``pid``'s session CPU group (Linux autogroup); return the old
    one, or None where there is no autogroup (or it may not be changed)."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        previous = int(path.read_text().split("nice")[-1])
        path.write_text(str(nice))
    except (OSError, ValueError):
        return None
    return previous


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def other_benchmarks() -> list[str]:
    """Command lines of other benchmark processes that would disturb the measurement."""
    found: list[str] = []
    mine = {os.getpid(), os.getppid()}
    for pattern in ("wrk", "bao", "bench/read_path"):
        result = subprocess.run(
            ["pgrep", "-fa", pattern], capture_output=True, text=True, check=False
        )
        for line in result.stdout.splitlines():
            pid, _, cmd = line.partition(" ")
            if pid.isdigit() and int(pid) not in mine and "bench/login" not in cmd:
                found.append(line.strip())
    return sorted(set(found))


def wait_until_quiet(max_wait: float) -> list[str]:
    """Wait (bounded) until no other benchmark runs; return what still runs, if any."""
    deadline = time.monotonic() + max_wait
    busy = other_benchmarks()
    while busy and time.monotonic() < deadline:
        log(f"waiting for {len(busy)} other benchmark process(es) to finish: {busy[:3]}")
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        busy = other_benchmarks()
    return busy


def machine_info() -> dict[str, Any]:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_head": head,
        "src_dirty": bool(dirty),
        "loadavg_at_start": list(os.getloadavg()),
    }


# -- the stub STS and the readers: helper processes (login.py's hidden modes) --------------


def stub_sts_main(args: argparse.Namespace) -> int:
    """Run a stub STS answering every request with an identity after ``delay`` seconds.

    Commands on stdin, one a line: ``count`` (prints the requests received), ``stop``.
    """
    stub = DelayedSts(
        identity_xml(arn=args.arn, user_id=args.user_id, account=args.account),
        delay=args.delay,
        backlog=args.backlog,
    )
    stub.start()
    print(json.dumps({"url": stub.url}), flush=True)
    deadline = time.monotonic() + args.max_seconds
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(json.dumps({"count": stub.request_count}), flush=True)
            elif command == "stop" or time.monotonic() > deadline:
                break
    finally:
        stub.stop()
    return 0


async def _readers_async(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    samples: list[tuple[float, float, int]] = []
    interval = args.readers / args.rate if args.rate > 0 else 0.0
    url = httpx.URL(args.url)
    # The instrument must cost the shared cores as little as it can: a raw keep-alive
    # HTTP/1.1 exchange per read (about a tenth of httpx's CPU per request), so that what it
    # measures is the server, not its own client library competing with it.
    request = (
        f"GET {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Authorization: Bearer {os.environ['BENCH_READER_TOKEN']}\r\n\r\n"
    ).encode()

    async def exchange(
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        if streams is None:
            streams = await asyncio.open_connection(url.host, url.port)
        reader_stream, writer = streams
        writer.write(request)
        head = await reader_stream.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        closing = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                closing = True
        await reader_stream.readexactly(length)
        if closing:
            writer.close()
            return status, None
        return status, streams

    async def reader() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        next_at = time.monotonic() + random.random() * interval
        while not stop.is_set():
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if stop.is_set():
                        break
                # A late reader does not catch up with a burst of its own.
                next_at = max(next_at + interval, time.monotonic())
            started = time.monotonic()
            try:
                status, streams = await asyncio.wait_for(exchange(streams), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                status, streams = 0, None
            samples.append((started, time.monotonic() - started, status))
        if streams is not None:
            streams[1].close()

    tasks = [asyncio.create_task(reader()) for _ in range(args.readers)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    sys.stdout.write(json.dumps({"samples": samples}) + "\n")
    sys.stdout.flush()
    return 0


def readers_main(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_readers_async(args))


class HelperProcess:
    """A hidden mode of ``login.py`` run as a child process, talked to over stdin/stdout."""

    def __init__(
        self, mode: str, *extra: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = PROCS.spawn(
            [sys.executable, str(LOGIN_SCRIPT), mode, *extra],
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            text=True,
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"helper process ended early:\n{tail(self.log_path)}")
        return dict(json.loads(line))

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.send("stop")
        PROCS.stop(self.process)
        self._log.close()


# -- the server ----------------------------------------------------------------------------


class Server:
    """``strongroom server`` with SQLite in ``directory``; output to ``server.log``."""

    def __init__(
        self,
        directory: Path,
        workers: int,
        extra_endpoints: Sequence[str],
        extra_env: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.workers = workers
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = directory / "server.log"
        metrics = directory / "metrics"
        metrics.mkdir()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STRONGROOM_", "PROMETHEUS_MULTIPROC_DIR", "AWS_"))
        }
        self.env.update(
            {
                "STRONGROOM_DATABASE_URL": f"sqlite:///{directory / 'strongroom.db'}",
                "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "STRONGROOM_STS_EXTRA_ENDPOINTS": ",".join(extra_endpoints),
                "STRONGROOM_LOG_LEVEL": "WARNING",
                "STRONGROOM_LOG_FORMAT": "json",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            }
        )
        for item in extra_env:
            name, _, value = item.partition("=")
            self.env[name] = value
        self.process: subprocess.Popen[Any] | None = None
        self.command: list[str] = []

    def bootstrap(self) -> dict[str, str]:
        result = subprocess.run(
            [STRONGROOM, "bootstrap", "--json"],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"strongroom bootstrap failed:\n{result.stderr}")
        return dict(json.loads(result.stdout))

    def start(self) -> None:
        self.command = [
            STRONGROOM,
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with self.log_path.open("wb") as output:
            self.process = PROCS.spawn(
                self.command, env=self.env, cwd=self.directory, stdout=output, stderr=output
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{tail(self.log_path)}")
            try:
                if httpx.get(self.url + "/v1/sys/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after 60 s:\n{tail(self.log_path)}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) if self.process else 0.0

    def worker_pids(self) -> list[int]:
        """The worker processes: neither the supervisor nor the login processes."""
        if self.process is None:
            return []
        workers = []
        for pid in tree_pids(self.process.pid):
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b": worker " in command:  # the title the supervisor gives each worker
                    workers.append(pid)
        return workers

    def stop(self) -> None:
        if self.process is not None:
            PROCS.stop(self.process)
            self.process = None


# -- what the server says: its /metrics page and its audit trail ---------------------------


def metrics_text(server: Server) -> str:
    """The server's /metrics page (all workers), or "" if it cannot be had."""
    try:
        return httpx.get(server.url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def read_histogram(server: Server) -> dict[float, float]:
    """Cumulative bucket counts of the server's own latency of secret reads (all workers).

    ``strongroom_http_request_seconds`` is observed by the app's outermost middleware: it
    covers routing, the handler and the audit commit, not the time a request waited for the
    worker's event loop or the network. Compared with the readers' own figures, it tells time
    spent in the app from time spent waiting for it.
    """
    text = metrics_text(server)
    if not text:
        return {}
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("strongroom_http_request_seconds_bucket{") and 'route="/v1/secrets' in (
            line
        ):
            labels, _, value = line.partition("} ")
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if bound == "+Inf" else float(bound)
            buckets[le] = buckets.get(le, 0.0) + float(value)
    return buckets


def labelled_counts(server: Server, metric: str, label: str) -> dict[str, float]:
    """A counter's values by one label, summed over the other labels (all workers)."""
    text = metrics_text(server)
    if not text:
        return {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, _, value = line.partition("} ")
            name = labels.split(f'{label}="', 1)[1].split('"', 1)[0]
            counts[name] = counts.get(name, 0.0) + float(value)
    return counts


def route_seconds(server: Server, route: str) -> tuple[float, float]:
    """(sum, count) of ``strongroom_http_request_seconds`` for one route, all processes.

    The sum is exact (not a bucket bound): its delta over a phase, divided by the count's,
    is the mean time the app spent on the route, from the outermost middleware's view.
    """
    text = metrics_text(server)
    if not text:
        return 0.0, 0.0
    totals = [0.0, 0.0]
    label = f'route="{route}"'
    for line in text.splitlines():
        for index, name in enumerate(("_sum{", "_count{")):
            if line.startswith("strongroom_http_request_seconds" + name) and label in line:
                totals[index] += float(line.rpartition(" ")[2])
    return totals[0], totals[1]


def sts_seconds(server: Server) -> tuple[float, float]:
    """(sum, count) of ``strongroom_sts_request_seconds``, answered calls, all processes."""
    text = metrics_text(server)
    totals = [0.0, 0.0]
    for line in text.splitlines() if text else ():
        for index, name in enumerate(("_sum{", "_count{")):
            if line.startswith("strongroom_sts_request_seconds" + name) and "answered" in line:
                totals[index] += float(line.rpartition(" ")[2])
    return totals[0], totals[1]


def login_handoffs(server: Server) -> dict[str, float]:
    """Where new login connections were served (strongroom_login_handoffs_total)."""
    return labelled_counts(server, "strongroom_login_handoffs_total", "outcome")


def audit_batches(server: Server) -> dict[str, float]:
    """Where reads' audit group commits ran (strongroom_audit_batches_total)."""
    return labelled_counts(server, "strongroom_audit_batches_total", "path")


def failed_requests(database: Path) -> list[dict[str, Any]]:
    """Failed requests by action, status and reason, read from the audit trail (SQLite)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT action, status, reason, count(*) FROM audit_events WHERE status >= 400 "
                "GROUP BY action, status, reason ORDER BY count(*) DESC LIMIT 20"
            ).fetchall()
    except sqlite3.Error as exc:
        return [{"error": repr(exc)}]
    return [
        {"action": a, "status": st, "reason": (r or "")[:300], "count": n} for a, st, r, n in rows
    ]
