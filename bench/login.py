"""AWS IAM login benchmark (SPEC section 3) against a real ``strongroom server`` process.

    .venv/bin/python bench/login.py [--workers 2] [--logins 200] [--fresh-connections]
                                    [--burst 200] [--bursts 8]
                                    [--client-shards 1] [--sts-delay 0.2] [--readers 16]
                                    [--reader-rate 320] [--idle-seconds 3] [--no-wait]
                                    [--load-nice 19] [--no-idle-group] [--reader-nice -10]
                                    [--profile [--profile-mode cpu|wall]] [--server-env N=V]

Everything runs on 127.0.0.1: ``strongroom server`` (SQLite in a temp dir, ``--workers 2`` by
default), moto's STS (``aws_sts.MotoSts``, signature checks ON), a stub STS that answers after a
delay (``aws_sts.DelayedSts``) in its own process, and a reader process.

1. Sequential logins over the STS round trip. An IAM role is created in moto and assumed; each
   of ``--logins`` logins (after ``--warmup`` ones) carries a GetCallerIdentity request freshly
   signed by botocore for moto's URL, every one with its own X-Amz-Date (one second apart,
   going backwards, inside the 15-minute window), since the server refuses a replayed
   signature. Interleaved with them, the same signed request is POSTed straight to moto with
   httpx (exactly the signed headers, as the server's STS client sends it; moto closes every
   connection, so each call connects, as the server's do): that is the STS round trip alone.
   Added latency = login - STS, at p50 (target ≤ 3 ms) and p99. The logins go one after
   another through one kept-alive client, or each on a new connection (``--fresh-connections``,
   as a client that does not keep connections would). The table also gives the mean time the
   app spent per login (its request histogram's sum), STS included, and the mean STS round
   trip as the server's STS client timed it (``strongroom_sts_request_seconds``).
2. Bursts. An auth method whose ``sts_url`` is the stub STS (allowed through
   ``STRONGROOM_STS_EXTRA_ENDPOINTS``), which answers every GetCallerIdentity after
   ``--sts-delay`` seconds. After a small warm-up, ``--burst`` logins signed for the stub's URL
   are fired at once with one ``httpx.AsyncClient`` (a connection each; ``--client-shards N``
   spreads them over N clients, because one httpx client with 200 live connections burns
   ~0.7 s of CPU per burst in httpcore's pool bookkeeping, on the cores the server needs):
   wall time until the last answer (target < 1.5 s) and every status (all must be 200).
   Meanwhile ``--readers`` concurrent readers in a separate process read a secret with a
   token, paced at ``--reader-rate`` reads/s in total (0: as fast as they can); read latency
   p99 of the reads that overlap a burst vs the p99 of the same readers in the
   ``--idle-seconds`` just before it (target: during ≤ 2x idle). Reads are pooled over
   ``--bursts`` bursts (8 by default: about 1,600 reads during bursts, so the p99 is not the
   word of a handful). Each burst signs with a throwaway key pair of its own (the stub checks
   no signature), so any number of bursts stays inside the 15-minute window. Before the
   bursts the stub alone is checked with the same number of concurrent requests (its listen
   backlog is raised: ThreadingHTTPServer listens with 5). Each burst also records the CPU
   used meanwhile by the server, the load generator, the stub and the readers, and how busy
   the whole machine was. During the bursts the load generator and the stub run at
   ``--load-nice`` (default 19), and so do their sessions' CPU groups where Linux groups
   sessions ("autogroup": there a nice value alone ranks a task only within its session): they
   stand in for 200 EC2 instances and AWS STS, which do not share the server's two cores.
   Where a CPU cgroup can be made (root), they also go into one with ``cpu.idle`` set, which
   yields at once to any task outside it (``--no-idle-group`` to skip). The
   readers (the instrument) run at ``--reader-nice`` (default -10), their CPU group too: they
   stand in for clients on other machines, which never wait for the server's cores (at equal
   priority a waking reader waited up to a scheduler tick, 4 ms, behind the server's CPU
   group, its idle-priority login processes included, as ``perf sched`` showed); the table
   shows how long readers and workers waited for a core. The server keeps its priority. The
   readers speak raw keep-alive HTTP/1.1 (a sixth of httpx's CPU per request). The results
   list when in each burst its slowest reads started. The table also shows the server's
   own read latency (its ``strongroom_http_request_seconds`` histogram, so bucket bounds),
   where new login connections were served, and whether reads' audit events went to the audit
   journal or were committed (and then whether they waited for the SQLite lock).

Both phases report the CPU time the hypervisor stole meanwhile (/proc/stat): on a shared
virtual machine, a run with steal measured a machine slower than usual.

``--profile`` runs py-spy on the server's process tree during each phase (collapsed stacks in
bench/results/login_profile-*.folded; ``cpu`` samples the GIL holder only, ``wall`` every
thread). ``--server-env`` passes extra environment to the server only (for experiments).

Results: a table on stdout, progress on stderr, ``bench/results/login-<timestamp>.json``
(failed requests, if any, are listed from the audit trail). If other benchmarks (wrk, bao,
bench/read_path*) are running, the script first waits for them to finish (``--no-wait`` to
skip). Every process started here is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aws_sts import DelayedSts, MotoSts, identity_xml, sign_get_caller_identity
from processes import (
    IdleCpuGroup,
    Processes,
    free_port,
    group_cpu_seconds,
    raise_on_signal,
    run_queue_wait_seconds,
    tail,
    tree_cpu_seconds,
    tree_pids,
)

from strongroom.cli.aws_login import GET_CALLER_IDENTITY_BODY, AwsCredentials

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
STRONGROOM = str(VENV_BIN / "strongroom") if (VENV_BIN / "strongroom").exists() else "strongroom"
LOOPBACK = "127.0.0.1"
LOGIN_ROUTE = "/v1/auth/login"
SECRET_NAME = "/bench/db-password"
ROLE_NAME = "bench-role"  # the IAM role in moto
SESSION_NAME = "i-0bench000000000001"
MAX_SIGNING_OFFSET_S = 840  # X-Amz-Date must stay within 15 minutes of the server's clock

WARMUP_BURST = 8  # concurrent warm-up logins through the stub before the bursts
TARGET_ADDED_P50_MS = 3.0
TARGET_BURST_WALL_S = 1.5
TARGET_READ_P99_FACTOR = 2.0


def log(message: str) -> None:
    print(f"[login-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
    }


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


# -- the stub STS and the readers: helper processes (this file, hidden modes) --------------


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
    """A hidden mode of this file run as a child process, talked to over stdin/stdout."""

    def __init__(
        self, mode: str, *extra: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = PROCS.spawn(
            [sys.executable, str(Path(__file__).resolve()), mode, *extra],
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


def set_up(server: Server, admin: dict[str, str], moto_url: str, stub_url: str) -> dict[str, str]:
    """Roles, auth methods and a secret through the REST API; return IDs and the reader token."""
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
            response = http.request(method, path, **kwargs)
            if response.status_code != expect:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json() if response.content else None

        def login_key(access_id: str, access_key: str) -> dict[str, Any]:
            body = {"access_id": access_id, "access_type": "access_key", "access_key": access_key}
            return dict(call("POST", "/v1/auth/login", 200, json=body))

        auth = {
            "Authorization": f"Bearer {login_key(admin['access_id'], admin['access_key'])['token']}"
        }
        call("POST", "/v1/roles", 201, json={"name": "bench-apps"}, headers=auth)
        call(
            "PUT",
            "/v1/roles/bench-apps/rules",
            200,
            json={"rule_type": "item-rule", "path": "/bench/*", "capabilities": ["read"]},
            headers=auth,
        )
        call(
            "POST",
            "/v1/secrets",
            201,
            json={"name": SECRET_NAME, "value": secrets.token_urlsafe(24)},
            headers=auth,
        )
        ids: dict[str, str] = {}
        for name, sts_url in (("bench-iam-moto", moto_url), ("bench-iam-stub", stub_url)):
            method = call(
                "POST",
                "/v1/auth-methods",
                201,
                json={
                    "type": "aws_iam",
                    "name": name,
                    "bound_aws_account_id": ["123456789012"],
                    "bound_role_name": [ROLE_NAME],
                    "sts_url": sts_url,
                },
                headers=auth,
            )
            ids[name] = str(method["access_id"])
            call(
                "POST",
                "/v1/roles/bench-apps/associations",
                201,
                json={"auth_method": name, "sub_claims": {"role_name": [ROLE_NAME]}},
                headers=auth,
            )
        reader = call(
            "POST",
            "/v1/auth-methods",
            201,
            json={"type": "api_key", "name": "bench-reader", "jwt_ttl": 720},
            headers=auth,
        )
        call(
            "POST",
            "/v1/roles/bench-apps/associations",
            201,
            json={"auth_method": "bench-reader"},
            headers=auth,
        )
        token = login_key(reader["access_id"], reader["access_key"])
        if token.get("roles") != ["bench-apps"]:
            raise RuntimeError(f"reader token has roles {token.get('roles')}")
        ids["reader_token"] = str(token["token"])
        read = http.get(
            "/v1/secrets" + SECRET_NAME, headers={"Authorization": f"Bearer {ids['reader_token']}"}
        )
        if read.status_code != 200:
            raise RuntimeError(f"reader cannot read {SECRET_NAME}: {read.status_code} {read.text}")
    return ids


# -- signing -------------------------------------------------------------------------------


def sign_many(
    credentials: Any, url: str, offsets: Sequence[int], base: datetime | None = None
) -> list[dict[str, Any]]:
    """One freshly signed GetCallerIdentity per offset, X-Amz-Date = base - offset seconds.

    Requests signed for one URL at the same X-Amz-Date are identical, so every batch meant for
    one server must use one ``base`` and disjoint offsets (or it replays its own signatures).
    """
    now = base or datetime.now(UTC).replace(microsecond=0)
    age = (datetime.now(UTC) - now).total_seconds()
    if max(offsets) + age > MAX_SIGNING_OFFSET_S:
        raise SystemExit(
            f"too many signatures: X-Amz-Date would be {max(offsets) + age:.0f} s old, past the "
            f"{MAX_SIGNING_OFFSET_S} s this benchmark allows (15-minute window); lower "
            "--logins / --burst / --bursts"
        )
    return [
        sign_get_caller_identity(credentials, url=url, amz_date=now - timedelta(seconds=offset))
        for offset in offsets
    ]


def burst_credentials(number: int) -> AwsCredentials:
    """A throwaway AWS key pair for burst ``number`` (only ever sent to the stub STS)."""
    return AwsCredentials(f"AKIABENCHBURST{number:06d}", secrets.token_urlsafe(30))


def login_body(access_id: str, signed: dict[str, Any]) -> bytes:
    body = {"access_id": access_id, "access_type": "aws_iam", "cloud_id": signed["cloud_id"]}
    return json.dumps(body).encode()


# -- phase 1: sequential logins vs STS alone -----------------------------------------------


def sequential_phase(
    server: Server,
    moto_url: str,
    access_id: str,
    credentials: Any,
    count: int,
    warmup: int,
    *,
    fresh_connections: bool = False,
) -> dict[str, Any]:
    """Logins one after another on one kept-alive client, or (``fresh_connections``) each on
    a connection of its own, as a client that does not keep connections would."""
    signed = sign_many(credentials, moto_url + "/", range(1, warmup + count + 1))
    login_s: list[float] = []
    sts_s: list[float] = []
    json_headers = {"Content-Type": "application/json"}
    if fresh_connections:
        json_headers["Connection"] = "close"
    cpu_before = 0.0
    app_before = sts_before = (0.0, 0.0)
    with httpx.Client(timeout=30) as login_http, httpx.Client(timeout=30) as sts_http:
        for index, request in enumerate(signed):
            if index == warmup:
                cpu_before = server.cpu_seconds()
                app_before = route_seconds(server, LOGIN_ROUTE)
                sts_before = sts_seconds(server)
            # The STS round trip alone: the signed request as the server's STS client sends it
            # (exactly the signed headers, plus Host and Content-Length), on a kept-alive
            # connection.
            sts_request = httpx.Request(
                "POST",
                moto_url + "/",
                headers=list(request["headers"].items()),
                content=request["body"].encode(),
            )
            started = time.perf_counter()
            response = sts_http.send(sts_request)
            elapsed = time.perf_counter() - started
            if response.status_code != 200 or b"GetCallerIdentityResult" not in response.content:
                raise RuntimeError(f"moto refused GetCallerIdentity: {response.status_code}")
            payload = login_body(access_id, request)
            started = time.perf_counter()
            answer = login_http.post(
                server.url + "/v1/auth/login", content=payload, headers=json_headers
            )
            login_elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(
                    f"login {index} answered {answer.status_code}: {answer.text}\n"
                    f"{tail(server.log_path)}"
                )
            if index >= warmup:
                sts_s.append(elapsed)
                login_s.append(login_elapsed)
                done = index - warmup + 1
                if done % 25 == 0 or done == count:
                    log(
                        f"sequential: {done}/{count} logins, login p50 "
                        f"{percentile(login_s, 50) * 1000:.2f} ms, STS p50 "
                        f"{percentile(sts_s, 50) * 1000:.2f} ms"
                    )
        cpu = server.cpu_seconds() - cpu_before
        # The floor under every request: a health check (a bare endpoint) on the same client,
        # after the logins (so that its CPU is not counted as theirs).
        health_s: list[float] = []
        health_headers = {"Connection": "close"} if fresh_connections else {}
        for _ in range(count):
            started = time.perf_counter()
            checked = login_http.get(server.url + "/v1/sys/health", headers=health_headers)
            health_s.append(time.perf_counter() - started)
            if checked.status_code != 200:
                raise RuntimeError(f"health check answered {checked.status_code}")
    app_after = route_seconds(server, LOGIN_ROUTE)
    app_logins = app_after[1] - app_before[1]
    sts_after = sts_seconds(server)
    sts_calls = sts_after[1] - sts_before[1]
    login = summary_ms(login_s)
    sts = summary_ms(sts_s)
    return {
        "logins": count,
        "warmup": warmup,
        "fresh_connections": fresh_connections,
        "login": login,
        "sts_alone": sts,
        "added_p50_ms": round(login["p50_ms"] - sts["p50_ms"], 3),
        "added_p99_ms": round(login["p99_ms"] - sts["p99_ms"], 3),
        # Per-request pairing (login_i - sts_i) is noisier but does not mix distributions.
        "paired_diff_p50_ms": round(
            percentile([(a - b) * 1000 for a, b in zip(login_s, sts_s, strict=True)], 50), 3
        ),
        "server_cpu_ms_per_login": round(cpu * 1000 / count, 3),
        # Mean time inside the app (outermost middleware to the last byte handed to the
        # transport), STS included: the rest of a login's latency is connection set-up, the
        # handoff to a login process and the client.
        "app_mean_ms": round((app_after[0] - app_before[0]) * 1000 / app_logins, 3)
        if app_logins
        else None,
        # Mean STS round trip as the server's STS client timed it (send to whole answer).
        "server_sts_mean_ms": round((sts_after[0] - sts_before[0]) * 1000 / sts_calls, 3)
        if sts_calls
        else None,
        "health_check": summary_ms(health_s),
        "login_ms": [round(s * 1000, 3) for s in login_s],
        "sts_ms": [round(s * 1000, 3) for s in sts_s],
    }


# -- phase 2: bursts against a slow STS, readers alongside ----------------------------------


async def fire(
    url: str, bodies: Sequence[bytes], method: str = "login", shards: int = 1
) -> dict[str, Any]:
    """POST every body at once, one connection each; wall time and statuses.

    ``shards`` > 1 spreads the requests over that many AsyncClients (each with room for its
    share): httpcore's pool scans every connection it holds each time a response is closed,
    so one client with 200 live connections costs O(n^2) CPU (measured: ~0.8 s per burst of
    200 here, taken from the 2 cores the server runs on).
    """
    shards = max(1, min(shards, len(bodies)))
    share = -(-len(bodies) // shards)
    limits = httpx.Limits(max_connections=share + 16, max_keepalive_connections=share + 16)
    headers = (
        {"Content-Type": "application/json"}
        if method == "login"
        else {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    )
    results: list[tuple[float, float, str]] = []
    # Plain HTTP to 127.0.0.1 only: verify=False just spares each client loading the CA bundle.
    clients = [
        httpx.AsyncClient(timeout=30, limits=limits, verify=False)  # noqa: S501
        for _ in range(shards)
    ]
    try:

        async def one(client: httpx.AsyncClient, body: bytes) -> None:
            started = time.monotonic()
            try:
                response = await client.post(url, content=body, headers=headers)
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = f"error:{type(exc).__name__}"
            results.append((started, time.monotonic(), outcome))

        cpu_before = self_cpu_seconds()
        busy_before, total_before = machine_cpu()
        started = time.monotonic()
        await asyncio.gather(
            *(one(clients[index % shards], body) for index, body in enumerate(bodies))
        )
        finished = time.monotonic()
        busy_after, total_after = machine_cpu()
        client_cpu = self_cpu_seconds() - cpu_before
    finally:
        for client in clients:
            await client.aclose()
    latencies = [end - begin for begin, end, _ in results]
    return {
        "t_start": started,
        "started_epoch": round(time.time() - (time.monotonic() - started), 3),
        "t_end": finished,
        "wall_s": round(finished - started, 4),
        "client_shards": shards,
        "client_cpu_s": round(client_cpu, 3),
        "machine_busy_fraction": round(
            (busy_after - busy_before) / max(1.0, total_after - total_before), 3
        ),
        "statuses": dict(Counter(outcome for _, _, outcome in results)),
        "latency": summary_ms(latencies),
        "first_answer_s": round(min(end for _, end, _ in results) - started, 4),
    }


def reads_in(
    samples: Sequence[Sequence[float]], start: float, end: float, *, overlap: bool
) -> list[Sequence[float]]:
    """Reads started in [start, end), or (overlap) whose interval overlaps [start, end]."""
    if overlap:
        return [s for s in samples if s[0] < end and s[0] + s[1] > start]
    return [s for s in samples if start <= s[0] < end and s[0] + s[1] <= end]


def burst_phase(
    server: Server,
    stub: HelperProcess,
    stub_url: str,
    access_id: str,
    reader_token: str,
    credentials: Any,
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, Any]:
    # The stub alone, with as many concurrent requests: what the server's burst cannot beat.
    stub.send("count")
    before = int(stub.receive()["count"])
    check = asyncio.run(
        fire(
            stub_url + "/",
            [GET_CALLER_IDENTITY_BODY.encode()] * args.burst,
            method="sts",
            shards=args.client_shards,
        )
    )
    stub.send("count")
    check["received"] = int(stub.receive()["count"]) - before
    check.pop("t_start")
    check.pop("t_end")
    log(
        f"stub STS alone: {args.burst} concurrent requests in {check['wall_s']:.3f} s "
        f"(delay {args.sts_delay} s), statuses {check['statuses']}"
    )

    readers = (
        None
        if args.readers <= 0
        else HelperProcess(
            "--_readers",
            "--url",
            server.url + "/v1/secrets" + SECRET_NAME,
            "--readers",
            str(args.readers),
            "--rate",
            str(args.reader_rate),
            "--max-seconds",
            str(60 + args.bursts * (args.idle_seconds + 15)),
            log_path=tmp / "readers.log",
            # In the environment, not the command line: other users' `ps` would show it.
            env={"BENCH_READER_TOKEN": reader_token},
        )
    )
    if readers is not None and args.reader_nice:
        # The readers are the instrument: a client on another machine never waits for the
        # server's cores. Where sessions are CPU groups (autogroup), a waking reader would
        # otherwise wait up to a scheduler tick for the server's group, login processes
        # included (SCHED_IDLE yields at once only to tasks of its own group).
        try:
            os.setpriority(os.PRIO_PROCESS, readers.process.pid, args.reader_nice)
        except OSError as exc:
            log(f"readers keep nice 0 ({exc}): their latency includes waits for a core")
        set_autogroup_nice(str(readers.process.pid), args.reader_nice)
    if args.load_nice:
        # This process (the burst's 200 clients) and the stub STS stand in for EC2 instances
        # and AWS, which do not share the server's cores; the readers keep the default priority.
        os.setpriority(os.PRIO_PROCESS, 0, args.load_nice)
        os.setpriority(os.PRIO_PROCESS, stub.process.pid, args.load_nice)
        # Where Linux shares CPU time between sessions first ("autogroup"), a nice value only
        # ranks a task within its session: the stub (a session of its own) and this process
        # would still get a full session's share. Their sessions get the nice value too.
        previous = set_autogroup_nice("self", args.load_nice)
        if previous is not None:
            atexit.register(set_autogroup_nice, "self", previous)  # the caller's shell session
        set_autogroup_nice(str(stub.process.pid), args.load_nice)
    load_group = None if args.no_idle_group else IdleCpuGroup.create("strongroom-bench-load")
    if load_group is not None:
        # Better still: an idle CPU group, which yields to any task outside it at once.
        atexit.register(load_group.remove)
        load_group.add(os.getpid())
        load_group.add(stub.process.pid)
        log(f"load generator and stub STS in the idle CPU group {load_group.path}")
    elif not args.no_idle_group:
        log("no idle CPU group could be made (needs a writable cgroup cpu controller): nice only")
    bursts: list[dict[str, Any]] = []
    base = datetime.now(UTC).replace(microsecond=0)  # one base: no X-Amz-Date used twice
    wait_for_login_processes(server)
    # Warm-up: a few concurrent logins through the stub, so that both workers have imported and
    # set up what the STS path needs before anything is measured.
    warm = sign_many(credentials, stub_url + "/", range(1, WARMUP_BURST + 1), base=base)
    warmed = asyncio.run(
        fire(server.url + "/v1/auth/login", [login_body(access_id, s) for s in warm])
    )
    if warmed["statuses"] != {"200": WARMUP_BURST}:
        raise RuntimeError(f"warm-up logins through the stub failed: {warmed['statuses']}")
    try:
        log(f"readers: {args.readers} concurrent, {args.reader_rate or 'max'} reads/s; warming up")
        time.sleep(args.idle_seconds)
        for number in range(args.bursts):
            # Each burst signs with a key pair of its own: the stub STS checks no signature,
            # and distinct keys keep signatures distinct however many bursts run (the replay
            # cache would refuse a repeat), while the X-Amz-Dates stay within 15 minutes.
            signed = sign_many(burst_credentials(number), stub_url + "/", range(1, args.burst + 1))
            bodies = [login_body(access_id, s) for s in signed]
            time.sleep(0.5)  # let the signing's CPU settle before the idle window
            # Scraped before the idle window opens: a /metrics scrape costs the worker that
            # serves it milliseconds of CPU, which must not be counted as idle reads' latency.
            histogram_start = read_histogram(server)
            batches_start = audit_batches(server)
            # Whether the readers (the instrument) and the workers had to wait for a core.
            waiting = [readers.process.pid] if readers else []
            workers = server.worker_pids()
            waits = [(run_queue_wait_seconds(waiting), run_queue_wait_seconds(workers))]
            idle_start = time.monotonic()
            time.sleep(args.idle_seconds)
            idle_end = time.monotonic()
            waits.append((run_queue_wait_seconds(waiting), run_queue_wait_seconds(workers)))
            histogram_idle_end = read_histogram(server)
            batches_idle_end = audit_batches(server)
            stub.send("count")
            sts_before = int(stub.receive()["count"])
            cpu_before = server.cpu_seconds()
            others_before = {
                "stub_sts": group_cpu_seconds(stub.process.pid),
                "readers": group_cpu_seconds(readers.process.pid) if readers else 0.0,
            }
            result = asyncio.run(
                fire(server.url + "/v1/auth/login", bodies, shards=args.client_shards)
            )
            cpu = server.cpu_seconds() - cpu_before
            waits.append((run_queue_wait_seconds(waiting), run_queue_wait_seconds(workers)))
            burst_seconds = time.monotonic() - result["t_start"]
            result["run_queue_wait_ms_per_s"] = {
                who: {
                    "idle": round((waits[1][i] - waits[0][i]) * 1000 / args.idle_seconds, 2),
                    "during": round((waits[2][i] - waits[1][i]) * 1000 / burst_seconds, 2),
                }
                for i, who in enumerate(("readers", "workers"))
            }
            histogram_burst_end = read_histogram(server)
            batches_burst_end = audit_batches(server)
            result["audit_batches_idle"] = histogram_delta(batches_idle_end, batches_start)
            result["audit_batches_during"] = histogram_delta(batches_burst_end, batches_idle_end)
            result["server_reads_idle"] = histogram_delta(histogram_idle_end, histogram_start)
            result["server_reads_during"] = histogram_delta(histogram_burst_end, histogram_idle_end)
            # Who else used the machine's cores meanwhile.
            result["other_cpu_s"] = {
                "bench_client": result["client_cpu_s"],
                "stub_sts": round(
                    group_cpu_seconds(stub.process.pid) - others_before["stub_sts"], 3
                ),
                "readers": round(
                    (group_cpu_seconds(readers.process.pid) if readers else 0.0)
                    - others_before["readers"],
                    3,
                ),
            }
            time.sleep(0.5)
            stub.send("count")
            result["sts_requests"] = int(stub.receive()["count"]) - sts_before
            result["server_cpu_s"] = round(cpu, 3)
            result["idle_window"] = (idle_start, idle_end)
            bursts.append(result)
            log(
                f"burst {number + 1}/{args.bursts}: {args.burst} logins in "
                f"{result['wall_s']:.3f} s, statuses {result['statuses']}, "
                f"STS requests {result['sts_requests']}, server CPU {cpu:.2f} s, machine busy "
                f"{result['machine_busy_fraction']:.0%}, other CPU {result['other_cpu_s']}"
            )
            time.sleep(1.0)
    finally:
        samples: list[list[float]] = []
        if readers is not None:
            try:
                readers.send("stop")
                samples = readers.receive()["samples"]
            finally:
                readers.stop()

    idle_all: list[float] = []
    during_all: list[float] = []
    bad_reads = Counter(str(s[2]) for s in samples if s[2] != 200)
    for result in bursts:
        idle_start, idle_end = result.pop("idle_window")
        idle = [s[1] for s in reads_in(samples, idle_start, idle_end, overlap=False)]
        during = [s[1] for s in reads_in(samples, result["t_start"], result["t_end"], overlap=True)]
        result["reads_idle"] = summary_ms(idle)
        result["reads_during"] = summary_ms(during)
        # When in the burst the slowest reads started (ms after the first login was sent), to
        # tell the burst's arrival (accepts and handoffs) from its answers (200 ms later).
        slowest = sorted(
            reads_in(samples, result["t_start"], result["t_end"], overlap=True),
            key=lambda sample: sample[1],
        )[-10:]
        result["slowest_reads_during"] = [
            {
                "started_ms": round((sample[0] - result["t_start"]) * 1000, 1),
                "latency_ms": round(sample[1] * 1000, 2),
            }
            for sample in reversed(slowest)
        ]
        # CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps its events.
        result["monotonic_start_s"] = round(result["t_start"], 6)
        result.pop("t_start")
        result.pop("t_end")
        idle_all += idle
        during_all += during
    return {
        "burst_size": args.burst,
        "bursts": bursts,
        "server_reads_idle": histogram_summary([b["server_reads_idle"] for b in bursts]),
        "server_reads_during": histogram_summary([b["server_reads_during"] for b in bursts]),
        "audit_batches_idle": pooled([b["audit_batches_idle"] for b in bursts]),
        "audit_batches_during": pooled([b["audit_batches_during"] for b in bursts]),
        "stub_alone": check,
        "reads_idle": summary_ms(idle_all),
        "reads_during": summary_ms(during_all),
        "reads_total": len(samples),
        "reads_failed": dict(bad_reads),
    }


# -- report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def build_table(results: dict[str, Any]) -> tuple[list[list[str]], dict[str, bool]]:
    rows: list[list[str]] = []
    targets: dict[str, bool] = {}
    seq = results.get("sequential")
    if seq:
        rows += [
            [
                "login p50 / p99 (sequential, moto STS)",
                f"{seq['login']['p50_ms']:.2f} / {seq['login']['p99_ms']:.2f} ms",
                "",
                "",
            ],
            [
                "STS alone p50 / p99 (moto GetCallerIdentity)",
                f"{seq['sts_alone']['p50_ms']:.2f} / {seq['sts_alone']['p99_ms']:.2f} ms",
                "",
                "",
            ],
        ]
        targets["added_p50"] = seq["added_p50_ms"] <= TARGET_ADDED_P50_MS
        rows.append(
            [
                "added latency p50 (login - STS)",
                f"{seq['added_p50_ms']:.2f} ms",
                f"≤ {TARGET_ADDED_P50_MS:g} ms",
                verdict(targets["added_p50"]),
            ]
        )
        rows.append(["added latency p99 (login - STS)", f"{seq['added_p99_ms']:.2f} ms", "", ""])
        rows.append(
            [
                "  sequential logins' connections",
                "a new one per login" if seq.get("fresh_connections") else "one, kept alive",
                "",
                "",
            ]
        )
        rows.append(
            [
                "server CPU per login (both workers)",
                f"{seq['server_cpu_ms_per_login']:.2f} ms",
                "",
                "",
            ]
        )
        if seq.get("app_mean_ms") is not None:
            rows.append(
                [
                    "  time in the app per login, STS included (mean)",
                    f"{seq['app_mean_ms']:.2f} ms  (login mean {seq['login']['mean_ms']:.2f} ms)",
                    "",
                    "",
                ]
            )
        if seq.get("health_check"):
            health = seq["health_check"]
            rows.append(
                [
                    "  health check round trip p50 (same client)",
                    f"{health['p50_ms']:.2f} ms  (any request's floor; "
                    f"login - STS - health: {seq['added_p50_ms'] - health['p50_ms']:.2f} ms)",
                    "",
                    "",
                ]
            )
        if seq.get("server_sts_mean_ms") is not None:
            rows.append(
                [
                    "  STS round trip as the server timed it (mean)",
                    f"{seq['server_sts_mean_ms']:.2f} ms  (STS alone mean "
                    f"{seq['sts_alone']['mean_ms']:.2f} ms)",
                    "",
                    "",
                ]
            )
    burst = results.get("burst")
    if burst:
        walls = [b["wall_s"] for b in burst["bursts"]]
        n = burst["burst_size"]
        stub = burst["stub_alone"]
        rows.append(
            [
                f"stub STS alone: {n} concurrent, {results['args']['sts_delay'] * 1000:g} ms delay",
                f"{stub['wall_s']:.3f} s",
                "",
                "ok" if stub["statuses"] == {"200": n} else "FAILED",
            ]
        )
        targets["burst_wall"] = max(walls) < TARGET_BURST_WALL_S
        rows.append(
            [
                f"{n} concurrent logins, wall (worst of {len(walls)})",
                f"{max(walls):.3f} s  ({', '.join(f'{w:.3f}' for w in walls)})",
                f"< {TARGET_BURST_WALL_S:g} s",
                verdict(targets["burst_wall"]),
            ]
        )
        client_cpu = [b["client_cpu_s"] for b in burst["bursts"]]
        busy = [b["machine_busy_fraction"] for b in burst["bursts"]]
        server_cpu = [b["server_cpu_s"] for b in burst["bursts"]]
        rows.append(
            [
                "  CPU during bursts: server / load generator",
                f"{max(server_cpu):.2f} / {max(client_cpu):.2f} s (worst), machine busy "
                f"{max(busy):.0%}, client shards {burst['bursts'][0]['client_shards']}",
                "",
                "",
            ]
        )
        handoffs = results.get("login_handoffs") or {}
        queued = handoffs.get("login_process_queued", 0)
        if handoffs:
            kept = sum(
                handoffs.get(k, 0) for k in ("worker_idle", "worker_busy", "worker_not_ready")
            )
            rows.append(
                [
                    "  new login connections: login process / worker",
                    f"{handoffs.get('login_process', 0) + queued:.0f} ({queued:.0f} queued) / "
                    f"{kept:.0f}  (worker: {handoffs.get('worker_idle', 0):.0f} idle, "
                    f"{handoffs.get('worker_busy', 0):.0f} login processes behind, "
                    f"{handoffs.get('worker_not_ready', 0):.0f} not ready)",
                    "",
                    "",
                ]
            )
        statuses: Counter[str] = Counter()
        for b in burst["bursts"]:
            statuses.update(b["statuses"])
        failures = {k: v for k, v in statuses.items() if k != "200"}
        targets["burst_all_200"] = not failures
        rows.append(
            [
                "burst logins answered 200",
                f"{statuses.get('200', 0)}/{sum(statuses.values())}"
                + (f"  failures {failures}" if failures else ""),
                "all",
                verdict(targets["burst_all_200"]),
            ]
        )
        idle = burst["reads_idle"]
        during = burst["reads_during"]
        if not idle["n"] or not during["n"]:
            return rows, targets  # no readers
        rows.append(
            [
                "reads p50 / p99 idle (just before bursts)",
                f"{idle['p50_ms']:.2f} / {idle['p99_ms']:.2f} ms  (n={idle['n']})",
                "",
                "",
            ]
        )
        server_idle = burst.get("server_reads_idle")
        server_during = burst.get("server_reads_during")
        if server_idle and server_during and server_idle["n"] and server_during["n"]:
            rows.append(
                [
                    "  server's own read latency p50 / p99: idle | bursts",
                    f"≤ {server_idle['p50_le_ms']:g} / ≤ {server_idle['p99_le_ms']:g} ms | "
                    f"≤ {server_during['p50_le_ms']:g} / ≤ {server_during['p99_le_ms']:g} ms "
                    "(histogram buckets)",
                    "",
                    "",
                ]
            )
        batches_idle = burst.get("audit_batches_idle") or {}
        batches_during = burst.get("audit_batches_during") or {}

        def batches(counts: dict[str, float]) -> str:
            committed = counts.get("loop", 0) + counts.get("waited", 0) + counts.get("thread", 0)
            return (
                f"{counts.get('journal', 0):.0f} journaled, {committed:.0f} committed "
                f"({counts.get('waited', 0):.0f} waited for the lock)"
            )

        if batches_idle or batches_during:
            rows.append(
                [
                    "  reads' audit batches: idle | bursts",
                    f"{batches(batches_idle)} | {batches(batches_during)}",
                    "",
                    "",
                ]
            )
        waits = [
            b["run_queue_wait_ms_per_s"] for b in burst["bursts"] if "run_queue_wait_ms_per_s" in b
        ]
        if waits:

            def mean_wait(who: str, window: str) -> float:
                return sum(w[who][window] for w in waits) / len(waits)

            rows.append(
                [
                    "  waiting for a core (ms per s): readers | workers, idle → bursts",
                    f"{mean_wait('readers', 'idle'):.2f} → {mean_wait('readers', 'during'):.2f} | "
                    f"{mean_wait('workers', 'idle'):.2f} → {mean_wait('workers', 'during'):.2f}"
                    "  (run-queue time, mean of bursts)",
                    "",
                    "",
                ]
            )
        targets["reads_p99"] = during["p99_ms"] <= TARGET_READ_P99_FACTOR * idle["p99_ms"]
        rows.append(
            [
                "reads p50 / p99 during bursts",
                f"{during['p50_ms']:.2f} / {during['p99_ms']:.2f} ms  (n={during['n']}, "
                f"max {during['max_ms']:.1f})",
                f"p99 ≤ {TARGET_READ_P99_FACTOR:g}x idle = "
                f"{TARGET_READ_P99_FACTOR * idle['p99_ms']:.2f} ms",
                verdict(targets["reads_p99"]),
            ]
        )
        if burst["reads_failed"]:
            rows.append(["reads not 200", str(burst["reads_failed"]), "none", "NOT MET"])
            targets["reads_ok"] = False
    steal = [
        f"{name} {results[phase]['steal_s']:.2f} s"
        for phase, name in (("sequential", "sequential phase"), ("burst", "bursts phase"))
        if results.get(phase, {}).get("steal_s") is not None
    ]
    if steal:
        rows.append(["CPU time stolen by the hypervisor", ", ".join(steal), "", ""])
    return rows, targets


def print_table(rows: list[list[str]]) -> None:
    header = ["measure", "value", "target", "status"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(line)


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


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--logins", type=int, default=200, help="sequential logins measured")
    parser.add_argument("--warmup", type=int, default=10, help="sequential warm-up logins")
    parser.add_argument("--burst", type=int, default=200, help="concurrent logins per burst")
    parser.add_argument("--bursts", type=int, default=8, help="bursts (reads pooled over them)")
    parser.add_argument(
        "--client-shards",
        type=int,
        default=1,
        help="spread each burst over N httpx.AsyncClients (1: one client, as specified)",
    )
    parser.add_argument("--sts-delay", type=float, default=0.2, help="stub STS delay, seconds")
    parser.add_argument("--readers", type=int, default=16, help="concurrent readers")
    parser.add_argument(
        "--load-nice",
        type=int,
        default=19,
        help="nice value of the burst's clients and the stub STS during the bursts (they "
        "stand in for EC2 instances and AWS, which do not share the server's cores; 0: equal)",
    )
    parser.add_argument(
        "--no-idle-group",
        action="store_true",
        help="do not put the burst's clients and the stub STS in an idle CPU group (cgroup "
        "cpu.idle) during the bursts; --load-nice alone then ranks them below the server",
    )
    parser.add_argument(
        "--reader-nice",
        type=int,
        default=-10,
        help="nice value of the readers and their CPU group (they stand in for clients on "
        "other machines, which never wait for the server's cores; 0: equal)",
    )
    parser.add_argument(
        "--reader-rate", type=float, default=320.0, help="reads/s in total (0: closed loop)"
    )
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle window per burst")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument(
        "--fresh-connections",
        action="store_true",
        help="sequential logins each on a new connection (default: one kept-alive client)",
    )
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for other benches")
    parser.add_argument("--max-wait", type=float, default=1800.0, help="seconds to wait for them")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server only (e.g. STRONGROOM_STS_TIMEOUT_SECONDS=2)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server during each phase (skews it)"
    )
    parser.add_argument(
        "--profile-mode",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: GIL holder only; wall: all threads, idle included",
    )
    # Hidden modes: this file as a helper process.
    parser.add_argument(
        "--_stub-sts", dest="stub_mode", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--_readers", dest="readers_mode", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--delay", type=float, default=0.2, help=argparse.SUPPRESS)
    parser.add_argument("--arn", default="", help=argparse.SUPPRESS)
    parser.add_argument("--user-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--account", default="123456789012", help=argparse.SUPPRESS)
    parser.add_argument("--backlog", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.logins + args.warmup > MAX_SIGNING_OFFSET_S:
        parser.error(f"--logins + --warmup must be ≤ {MAX_SIGNING_OFFSET_S} (15-minute window)")
    if args.burst + WARMUP_BURST > MAX_SIGNING_OFFSET_S - 60:
        parser.error(
            f"--burst must be ≤ {MAX_SIGNING_OFFSET_S - 60 - WARMUP_BURST} (15-minute window)"
        )
    return args


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


def histogram_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def pooled(deltas: Sequence[dict[Any, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for delta in deltas:
        for key, count in delta.items():
            total[str(key)] = total.get(str(key), 0.0) + count
    return total


def histogram_summary(deltas: Sequence[dict[float, float]]) -> dict[str, Any]:
    """Pooled bucket counts; p50/p99 as the upper bound of the bucket they fall in (ms)."""
    pooled: dict[float, float] = {}
    for delta in deltas:
        for le, count in delta.items():
            pooled[le] = pooled.get(le, 0.0) + count
    total = pooled.get(float("inf"), 0.0)

    def bound(q: float) -> float | None:
        if total <= 0:
            return None
        for le in sorted(pooled):
            if pooled[le] >= q * total:
                return le * 1000.0
        return None

    return {"n": int(total), "p50_le_ms": bound(0.50), "p99_le_ms": bound(0.99)}


def wait_for_login_processes(server: Server, deadline_s: float = 60.0) -> None:
    """Wait until every worker passes new login connections to a ready login process.

    Probes are malformed logins (``{}``, a 400 that no failure counter sees) on fresh
    connections, sent together: an idle worker keeps a login for itself
    (``STRONGROOM_LOGIN_INLINE_WHEN_IDLE``), a busy one hands it over. Done when a round
    handed some over and found no worker without a ready login process.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        before = login_handoffs(server)
        if not before:
            return  # no login processes (STRONGROOM_LOGIN_PROCESSES=0)
        asyncio.run(fire(server.url + "/v1/auth/login", [b"{}"] * 16))
        after = login_handoffs(server)
        handed = sum(
            after.get(k, 0.0) - before.get(k, 0.0)
            for k in ("login_process", "login_process_queued")
        )
        if handed and after.get("worker_not_ready", 0.0) == before.get("worker_not_ready", 0.0):
            return
        time.sleep(0.5)
    log("login processes still not ready; measuring anyway")


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


def profile_start(args: argparse.Namespace, server: Server, name: str) -> Profiler | None:
    if not args.profile or server.process is None:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log(f"profiling the server with py-spy into bench/results/{name}")
    return Profiler(server.process.pid, RESULTS_DIR / name, args.profile_mode)


def profile_stop(profiler: Profiler | None, results: dict[str, Any], phase: str) -> None:
    if profiler is not None:
        output = profiler.stop()
        results.setdefault("profiles", {})[phase] = str(output.relative_to(ROOT))


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import uvloop  # the server's loop too; keeps the load generator's CPU down

        uvloop.install()

    waited_for: list[str] = []
    if not args.no_wait:
        waited_for = other_benchmarks()
        still = wait_until_quiet(args.max_wait)
        if still:
            log(f"WARNING: measuring while other benchmarks run: {still}")
    started_at = datetime.now(UTC)
    results: dict[str, Any] = {
        "benchmark": "login",
        "started_at": started_at.isoformat(),
        "args": {k: v for k, v in vars(args).items() if k in _PUBLIC_ARGS},
        "machine": machine_info(),
        "other_benchmarks_before": other_benchmarks(),
        "waited_for": waited_for,
    }
    tmp = Path(tempfile.mkdtemp(prefix="strongroom-login-bench-"))
    moto: MotoSts | None = None
    stub: HelperProcess | None = None
    server: Server | None = None
    try:
        log("starting moto STS (signature checks on)")
        moto = MotoSts(PROCS, tmp / "moto.log")
        principal = moto.assume_new_role(ROLE_NAME, SESSION_NAME)
        log(f"assumed {principal.arn}")

        stub = HelperProcess(
            "--_stub-sts",
            "--delay",
            str(args.sts_delay),
            "--arn",
            principal.arn,
            "--user-id",
            principal.user_id,
            "--account",
            principal.account,
            "--max-seconds",
            "3600",
            log_path=tmp / "stub.log",
        )
        stub_url = str(stub.receive()["url"])
        log(f"stub STS at {stub_url} (delay {args.sts_delay} s)")

        server = Server(tmp, args.workers, [moto.url, stub_url], args.server_env)
        admin = server.bootstrap()
        server.start()
        log(f"strongroom server at {server.url} with {args.workers} worker(s)")
        ids = set_up(server, admin, moto.url, stub_url)
        wait_for_login_processes(server)  # their start-up is not part of any measurement
        results["setup"] = {
            "server_command": " ".join(server.command),
            "database": "sqlite (temp dir)",
            "moto_url": moto.url,
            "stub_url": stub_url,
            "principal_arn": principal.arn,
        }
        stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
        if not args.skip_sequential:
            log(f"phase 1: {args.logins} sequential logins over moto STS")
            profiler = profile_start(args, server, f"login_profile-{stamp}-sequential.folded")
            steal_before = steal_seconds()
            try:
                results["sequential"] = sequential_phase(
                    server,
                    moto.url,
                    ids["bench-iam-moto"],
                    principal.credentials,
                    args.logins,
                    args.warmup,
                    fresh_connections=args.fresh_connections,
                )
                results["sequential"]["steal_s"] = round(steal_seconds() - steal_before, 2)
            finally:
                profile_stop(profiler, results, "sequential")
        if not args.skip_burst:
            log(
                f"phase 2: {args.bursts} x {args.burst} concurrent logins, STS delay "
                f"{args.sts_delay} s"
            )
            profiler = profile_start(args, server, f"login_profile-{stamp}-burst.folded")
            steal_before = steal_seconds()
            try:
                results["burst"] = burst_phase(
                    server,
                    stub,
                    stub_url,
                    ids["bench-iam-stub"],
                    ids["reader_token"],
                    principal.credentials,
                    args,
                    tmp,
                )
                results["burst"]["steal_s"] = round(steal_seconds() - steal_before, 2)
            finally:
                profile_stop(profiler, results, "burst")
        results["login_handoffs"] = login_handoffs(server)
        results["failed_requests_audit"] = failed_requests(tmp / "strongroom.db")
        if results["failed_requests_audit"]:
            log(f"failed requests (from the audit trail): {results['failed_requests_audit']}")
        results["server_log_tail"] = tail(server.log_path, 20)
    finally:
        if server is not None:
            server.stop()
        if stub is not None:
            stub.stop()
        if moto is not None:
            moto.stop()
        PROCS.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results["finished_at"] = datetime.now(UTC).isoformat()
    results["other_benchmarks_after"] = other_benchmarks()
    rows, targets = build_table(results)
    results["targets"] = {
        "added_latency_p50_ms_max": TARGET_ADDED_P50_MS,
        "burst_wall_s_max": TARGET_BURST_WALL_S,
        "read_p99_during_max_factor_of_idle": TARGET_READ_P99_FACTOR,
        "met": targets,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"login-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(
        f"AWS IAM login benchmark, strongroom server --workers {args.workers}, SQLite, "
        f"{os.cpu_count()} CPUs"
    )
    print_table(rows)
    if results["other_benchmarks_before"] or results["other_benchmarks_after"]:
        print(
            "WARNING: other benchmarks were running:",
            results["other_benchmarks_before"] or results["other_benchmarks_after"],
        )
    print(f"results: {out.relative_to(ROOT)}")
    return 0 if all(targets.values()) else 1


_PUBLIC_ARGS = {
    "workers",
    "logins",
    "warmup",
    "burst",
    "bursts",
    "client_shards",
    "sts_delay",
    "readers",
    "reader_rate",
    "idle_seconds",
    "skip_sequential",
    "skip_burst",
    "fresh_connections",
    "no_wait",
    "profile",
    "profile_mode",
    "server_env",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stub_mode:
        return stub_sts_main(args)
    if args.readers_mode:
        return readers_main(args)
    signal.signal(signal.SIGTERM, raise_on_signal)
    signal.signal(signal.SIGHUP, raise_on_signal)
    try:
        return run(args)
    finally:
        PROCS.stop_all()


if __name__ == "__main__":
    sys.exit(main())
