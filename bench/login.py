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

This file is the entry and the phases; ``login_rig.py`` has the processes they drive and the
probes they read, ``login_report.py`` the figures, the targets and the table.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aws_sts import MotoSts, sign_get_caller_identity
from login_report import (
    histogram_delta,
    histogram_summary,
    percentile,
    pooled,
    report,
    summary_ms,
)
from login_rig import (
    PROCS,
    RESULTS_DIR,
    ROOT,
    HelperProcess,
    Profiler,
    Server,
    audit_batches,
    failed_requests,
    log,
    login_handoffs,
    machine_cpu,
    machine_info,
    other_benchmarks,
    read_histogram,
    readers_main,
    route_seconds,
    self_cpu_seconds,
    set_autogroup_nice,
    steal_seconds,
    sts_seconds,
    stub_sts_main,
    wait_until_quiet,
)
from processes import (
    IdleCpuGroup,
    group_cpu_seconds,
    raise_on_signal,
    run_queue_wait_seconds,
    tail,
)

from strongroom.cli.aws_login import GET_CALLER_IDENTITY_BODY, AwsCredentials

LOGIN_ROUTE = "/v1/auth/login"
SECRET_NAME = "/bench/db-password"
ROLE_NAME = "bench-role"  # the IAM role in moto
SESSION_NAME = "i-0bench000000000001"
MAX_SIGNING_OFFSET_S = 840  # X-Amz-Date must stay within 15 minutes of the server's clock

WARMUP_BURST = 8  # concurrent warm-up logins through the stub before the bursts


# -- set-up: roles, auth methods and a secret through the REST API -------------------------


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


# -- phase 2: bursts against a slow STS, readers alongside ---------------------------------


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
    return 0 if report(results, started_at, args.workers) else 1


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
