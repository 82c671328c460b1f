"""PostgreSQL for the benches: a fresh database per run, the delaying proxy as a process of its
own, round-trip timing, and the CPU of the database's backends.

The admin URL (``--postgres-url``, default ``postgresql://postgres@127.0.0.1:5432/postgres``)
must be allowed to create and drop databases. Every database made here is named
``strongroom_bench_<time>_<random>`` and dropped on exit (``WITH (FORCE)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from processes import IdleCpuGroup, Processes, pids_cpu_seconds, tail
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PROXY_SCRIPT = Path(__file__).resolve().parent / "tcp_proxy.py"


@dataclass(frozen=True)
class BenchDatabase:
    """A database made for one run; ``url()`` reaches it directly or through another port."""

    name: str
    host: str
    port: int
    user: str
    admin_url: str

    def url(
        self,
        *,
        port: int | None = None,
        driver: str = "postgresql",
        application_name: str | None = None,
    ) -> str:
        """A URL for this database (``driver="postgresql+psycopg"`` for Strongroom)."""
        query = f"?{urlencode({'application_name': application_name})}" if application_name else ""
        return f"{driver}://{self.user}@{self.host}:{port or self.port}/{self.name}{query}"


def admin_parts(admin_url: str) -> dict[str, Any]:
    parts = conninfo_to_dict(admin_url)
    return {
        "host": parts.get("host", "127.0.0.1"),
        "port": int(str(parts.get("port") or 5432)),
        "user": parts.get("user", "postgres"),
    }


@contextlib.contextmanager
def fresh_database(admin_url: str, label: str = "") -> Iterator[BenchDatabase]:
    """CREATE DATABASE for the run; DROP it (disconnecting whoever is left) when done."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = f"strongroom_bench_{label + '_' if label else ''}{stamp}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield BenchDatabase(name=name, admin_url=admin_url, **admin_parts(admin_url))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def backend_pids(admin: psycopg.Connection[Any], database: str) -> list[int]:
    """The client backends connected to ``database`` now."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
        (database,),
    ).fetchall()
    return [int(row[0]) for row in rows]


class BackendCpu:
    """CPU time of the backends serving one database, from /proc (PostgreSQL on this machine).

    A backend that exits between two readings takes its CPU time with it: connection pools
    keep theirs open, so over a run this undercounts by little.
    """

    def __init__(self, admin_url: str, database: str) -> None:
        self._admin = psycopg.connect(admin_url, autocommit=True)
        self._database = database

    def seconds(self) -> float:
        return pids_cpu_seconds(backend_pids(self._admin, self._database))

    def connections(self) -> dict[str, int]:
        """Backends connected to the database now, by ``application_name`` (every one counts
        against the server's ``max_connections``, which other users of it share)."""
        rows = self._admin.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend' GROUP BY 1 ORDER BY 1",
            (self._database,),
        ).fetchall()
        return {str(name): int(count) for name, count in rows}

    def close(self) -> None:
        self._admin.close()


def select_one_ms(connection: psycopg.Connection[Any]) -> float:
    started = time.perf_counter()
    connection.execute("SELECT 1").fetchone()
    return (time.perf_counter() - started) * 1000


def summary_ms(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "count": len(ordered),
        "min_ms": round(ordered[0], 3),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def round_trip(conninfo: str, count: int = 200) -> dict[str, Any]:
    """``SELECT 1`` ``count`` times in a row on one connection (after 20 not counted)."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for _ in range(20):
            select_one_ms(connection)
        return summary_ms([select_one_ms(connection) for _ in range(count)])


class RoundTripProbe:
    """``SELECT 1`` every ``interval`` seconds in a thread, while a measurement runs: the round
    trip as the server meets it under load (50 a second cost the machine next to nothing)."""

    def __init__(self, conninfo: str, interval: float = 0.02) -> None:
        self._conninfo = conninfo
        self._interval = interval
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtt-probe", daemon=True)
        self._error: str | None = None

    def _run(self) -> None:
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as connection:
                select_one_ms(connection)
                while not self._stop.wait(self._interval):
                    self._samples.append(select_one_ms(connection))
        except psycopg.Error as exc:
            self._error = repr(exc)

    def __enter__(self) -> RoundTripProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        result = summary_ms(self._samples)
        if self._error:
            result["error"] = self._error
        return result


class DelayProxy:
    """``bench/tcp_proxy.py`` as a process of its own, between servers and PostgreSQL.

    ``idle_cpu``: the proxy runs in a CPU cgroup with ``cpu.idle`` set (where one can be made),
    so that it takes no core a server worker wants: it stands in for a network, which costs
    the server's machine nothing. Its price is a longer round trip whenever both cores are
    busy, which the benches measure under load (:class:`RoundTripProbe`) and report.
    """

    def __init__(
        self,
        procs: Processes,
        target: tuple[str, int],
        delay_ms: float,
        log_path: Path,
        *,
        idle_cpu: bool = False,
    ) -> None:
        self._procs = procs
        self._log_path = log_path
        self.delay_ms = delay_ms
        cmd = [
            sys.executable, str(PROXY_SCRIPT),
            "--target", f"{target[0]}:{target[1]}",
            "--delay-ms", str(delay_ms),
        ]  # fmt: skip
        with log_path.open("wb") as log_handle:
            self.process = procs.spawn(cmd, stdout=log_handle, stderr=subprocess.STDOUT)
        self.announce = self._next_json_line(0, timeout=15)
        self.port = int(str(self.announce["listen"]).rsplit(":", 1)[1])
        self._group = IdleCpuGroup.create("strongroom-bench-proxy") if idle_cpu else None
        if self._group is not None:
            self._group.add(self.process.pid)
        self.announce["cpu"] = "idle cgroup" if self._group is not None else "normal"

    def _lines(self) -> list[str]:
        """The complete lines of the proxy's output so far."""
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return []
        return text[: text.rfind("\n") + 1].splitlines()

    def _next_json_line(self, seen: int, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self._lines()
            for line in lines[seen:]:
                if line.startswith("{"):
                    return dict(json.loads(line))
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"tcp_proxy said nothing in {timeout:.0f} s:\n{tail(self._log_path)}")

    def counters(self) -> dict[str, int]:
        """Connections, chunks and bytes so far (the proxy prints them on SIGUSR1)."""
        seen = len(self._lines())
        os.kill(self.process.pid, signal.SIGUSR1)
        return {k: int(v) for k, v in self._next_json_line(seen).items()}

    def stop(self) -> None:
        self._procs.stop(self.process)
        if self._group is not None:
            self._group.remove()


def port_maybe_delayed(
    stack: contextlib.ExitStack,
    procs: Processes,
    database: BenchDatabase,
    delay_ms: float,
    log_path: Path,
    info: dict[str, Any],
) -> int:
    """The port servers should use for ``database``: its own, or (``delay_ms`` > 0) that of a
    :class:`DelayProxy` started in front of it, stopped with ``stack``; the proxy's
    announcement and the idle round trip through it go into ``info``."""
    if delay_ms <= 0:
        return database.port
    proxy = DelayProxy(procs, (database.host, database.port), delay_ms, log_path)
    stack.callback(proxy.stop)
    info["proxy"] = proxy.announce
    info["db_round_trip_idle"] = round_trip(database.url(port=proxy.port))
    return proxy.port


def network_label(delay_ms: float) -> str:
    """How servers reach the database behind :func:`port_maybe_delayed`, for a report's
    title: ``+N ms (proxy)`` through the delaying proxy, else ``loopback``."""
    return f"+{delay_ms:g} ms (proxy)" if delay_ms > 0 else "loopback"
