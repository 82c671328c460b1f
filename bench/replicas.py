"""Replicas on one PostgreSQL database: reads/s with 1, 2 and 3 ``strongroom server`` processes,
and how long their audit appends wait for each other.

    .venv/bin/python bench/replicas.py [--replicas 1,2,3] [--workers 1] [--connections 16]
        [--duration 10] [--warmup 2] [--delay-ms 0] [--sample-ms 10] [--threads 1]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--quiet-limit 0.2] [--quiet-wait 60] [--output PATH]

Set-up: a fresh database on ``--postgres-url``'s server (dropped after the run), migrated by
``strongroom bootstrap --json``; then as many ``strongroom server`` processes as the largest
``--replicas`` count, each on its own port with ``--workers`` workers, all on that database with
one master key, started one after another. Each replica names itself to PostgreSQL
(``application_name=bench-replica-N``). ``--delay-ms`` > 0 puts every replica's database
connections through one ``bench/tcp_proxy.py`` adding that round trip (``--delay-ms 1``: a
managed PostgreSQL about a millisecond away), as in ``read_path.py``. The NON-admin reader of
``read_path.py`` (``strongroom_server.py``) is set up through replica 1, and its read is checked
on every replica (200 and the right value; 403 outside its grant) before and after the runs.

For each count N in ``--replicas``: a warm-up, then ``--duration`` seconds of N wrk processes at
once, one per replica, each with ``--connections`` connections (the load grows with the
replicas, as when replicas are added for more clients). Meanwhile a sampler polls
``pg_stat_activity`` every ``--sample-ms`` for the database's backends inside a write
transaction (``backend_xid`` set: in this read-only load, only audit appends write) and files
each under what it is doing:

- ``lock``: waiting for a heavyweight lock (``wait_event_type = 'Lock'``): an append queued
  behind another append's lock (before revision 0004, on the one chain head every append locked;
  since, each process appends to chains of its own, and only opening or closing one locks the
  registry's head: ``audit/store.py``);
- ``client``: ``idle in transaction``: holding its locks while waiting for its server process to
  send the next statement (a round trip, the server's thread or GIL);
- ``wal``: flushing its commit (a ``WAL*`` wait event);
- ``cpu``: running; ``other``: any other wait event.

From the samples: the share of append time spent waiting for another append's lock (the figure
issue 13 asks to bring down), the mean number of appends in progress and queued, and how much of
the time at least one append held its locks ("head busy": near 100 %, appends are serialised).
Appends are counted exactly from what they wrote: the ``audit_events`` rows added over the run
and the transactions that added them (distinct ``xmin``), whatever the chain's head looks like.
After the runs ``strongroom audit verify`` checks every chain (they must be intact) and counts
the writers.

Also per run: reads/s and p50/p99 per replica and in total, non-2xx and socket errors, the CPU
of the replicas' process trees and of the database's backends per read, the sampler's own CPU,
and how many cores other people's processes used (a machine shared with others measures less).

Results: a table on stdout, progress on stderr, ``bench/results/replicas-<timestamp>.json``.
Every process started here is stopped on exit, error, Ctrl-C or SIGTERM; the database is dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import postgres
import psycopg
import wrk
from processes import (
    LOOPBACK,
    Processes,
    free_port,
    machine_busy_seconds,
    pids_cpu_seconds,
    raise_on_signal,
    tree_cpu_seconds,
)
from results_file import write_results
from strongroom_server import (
    SECRET_NAME,
    bootstrap,
    check_read,
    new_master_key,
    reader_token,
    run_cli,
    server_env,
    start_server,
)

PROCS = Processes()
STATES = ("lock", "client", "wal", "cpu", "other")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the sampler ---------------------------------------------------------------------------

_SAMPLE = """
SELECT application_name, state, wait_event_type, wait_event, left(query, 48)
FROM pg_stat_activity
WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND (backend_xid IS NOT NULL OR wait_event_type = 'Lock')
"""


def classify(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """What a backend inside a write transaction is doing (see the module's docstring)."""
    if wait_type == "Lock":
        return "lock"
    if state == "idle in transaction":
        return "client"
    if wait_event is not None and wait_event.startswith("WAL"):
        return "wal"
    if wait_type is None:
        return "cpu"
    return "other"


@dataclass
class Samples:
    ticks: int = 0
    busy_ticks: int = 0  # ticks in which some append held its locks (was not queued)
    by_state: Counter[str] = field(default_factory=Counter)
    by_replica: dict[str, Counter[str]] = field(default_factory=dict)
    statements: Counter[str] = field(default_factory=Counter)  # what the appends ran
    lock_events: Counter[str] = field(default_factory=Counter)  # which locks they waited for


class WaitSampler:
    """Polls pg_stat_activity in a thread every ``interval`` seconds (module docstring)."""

    def __init__(self, admin_url: str, database: str, interval: float) -> None:
        self._connection = psycopg.connect(admin_url, autocommit=True)
        self._backend = int(self._connection.info.backend_pid)
        self._database = database
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = Samples()
        self.thread_cpu_s = 0.0
        self.backend_cpu_s = 0.0

    def __enter__(self) -> WaitSampler:
        self.samples = Samples()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        backend_before = pids_cpu_seconds([self._backend])
        thread_before = time.thread_time()
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self._sample()
            next_tick += self._interval
            self._stop.wait(max(0.0, next_tick - time.monotonic()))
        self.thread_cpu_s = time.thread_time() - thread_before
        self.backend_cpu_s = pids_cpu_seconds([self._backend]) - backend_before

    def _sample(self) -> None:
        rows = self._connection.execute(_SAMPLE, (self._database,)).fetchall()
        samples = self.samples
        samples.ticks += 1
        holding = False
        for app, state, wait_type, wait_event, query in rows:
            kind = classify(state, wait_type, wait_event)
            holding = holding or kind != "lock"
            samples.by_state[kind] += 1
            samples.by_replica.setdefault(app or "?", Counter())[kind] += 1
            samples.statements[" ".join(str(query).split()[:3])] += 1
            if kind == "lock":
                samples.lock_events[str(wait_event)] += 1
        samples.busy_ticks += holding

    def close(self) -> None:
        self._connection.close()


def wait_figures(samples: Samples) -> dict[str, Any]:
    total = sum(samples.by_state.values())
    ticks = max(1, samples.ticks)

    def shares(counts: Counter[str]) -> dict[str, float]:
        whole = sum(counts.values())
        return {s: round(counts[s] / whole, 3) for s in STATES} if whole else {}

    return {
        "ticks": samples.ticks,
        "append_samples": total,
        "share": shares(samples.by_state),
        "lock_wait_share": round(samples.by_state["lock"] / total, 3) if total else 0.0,
        "appends_in_progress_mean": round(total / ticks, 3),
        "appends_queued_mean": round(samples.by_state["lock"] / ticks, 3),
        "head_busy_share": round(samples.busy_ticks / ticks, 3),
        "by_replica": {
            app: {
                "lock_wait_share": round(c["lock"] / sum(c.values()), 3),
                "samples": sum(c.values()),
            }
            for app, c in sorted(samples.by_replica.items())
        },
        "statements": dict(samples.statements.most_common(8)),
        "lock_events": dict(samples.lock_events),
    }


# -- replicas ------------------------------------------------------------------------------


@dataclass
class Replica:
    number: int
    base: str
    process: subprocess.Popen[Any]
    command: list[str]

    @property
    def url(self) -> str:
        return self.base + "/v1/secrets" + SECRET_NAME


# Appends are counted from the rows they left, by transaction id, so that the count does not
# depend on how the chains are kept.
AUDIT_TABLE = "audit_events"


def current_xid(connection: psycopg.Connection[Any]) -> int:
    """A transaction id taken now: rows written after it have a larger ``xmin``."""
    row = connection.execute("SELECT txid_current() % 4294967296").fetchone()
    assert row is not None
    return int(row[0])


def appends_between(connection: psycopg.Connection[Any], after: int, upto: int) -> tuple[int, int]:
    """(events, transactions) that the audit table gained between two :func:`current_xid`
    readings (a fresh database: no transaction id wraparound in between)."""
    row = connection.execute(
        f"SELECT count(*), count(DISTINCT xmin::text) FROM {AUDIT_TABLE} "  # noqa: S608 (a constant)
        "WHERE xmin::text::bigint > %s AND xmin::text::bigint < %s",
        (after, upto),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_load(
    replicas: list[Replica], header: tuple[str, str], args: argparse.Namespace, duration: int
) -> list[dict[str, Any]]:
    """One wrk per replica, all at once; their figures in replica order."""
    started = [
        PROCS.spawn(
            wrk.command(replica.url, args.connections, duration, args.threads),
            env=wrk.environment(header),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for replica in replicas
    ]
    results = []
    for replica, process in zip(replicas, started, strict=True):
        try:
            out, err = process.communicate(timeout=duration + 60)
        finally:
            PROCS.stop(process, grace=2)
        figures = wrk.parse(out)
        if process.returncode != 0 or figures is None:
            raise RuntimeError(f"wrk on replica {replica.number} failed:\n{out}\n{err}")
        results.append({"replica": replica.number, **figures})
    return results


def measure(
    count: int,
    replicas: list[Replica],
    header: tuple[str, str],
    sampler: WaitSampler,
    db: psycopg.Connection[Any],
    backends: postgres.BackendCpu,
    args: argparse.Namespace,
) -> dict[str, Any]:
    active = replicas[:count]
    foreign = wait_for_quiet(replicas, args.quiet_limit, args.quiet_wait)
    if args.warmup > 0:
        run_load(active, header, args, args.warmup)
    xid_before = current_xid(db)
    server_before = [tree_cpu_seconds(r.process.pid) for r in active]
    db_before = backends.seconds()
    busy_before = machine_busy_seconds()
    with sampler:
        per_replica = run_load(active, header, args, args.duration)
    busy = machine_busy_seconds() - busy_before
    server_cpu = sum(
        tree_cpu_seconds(r.process.pid) - before
        for r, before in zip(active, server_before, strict=True)
    )
    db_cpu = backends.seconds() - db_before
    events, appends = appends_between(db, xid_before, current_xid(db))
    requests = sum(r["requests"] for r in per_replica)
    seconds = max(r["seconds"] for r in per_replica)
    return {
        "replicas": count,
        "reads_per_s": round(sum(r["reads_per_s"] for r in per_replica), 1),
        "requests": requests,
        "p99_ms_max": max(r["p99_ms"] for r in per_replica),
        "non_2xx": sum(r["non_2xx"] for r in per_replica),
        "socket_errors": sum(r["socket_errors"] + r["timeouts"] for r in per_replica),
        "per_replica": per_replica,
        "audit_events": events,
        "audit_events_per_s": round(events / seconds, 1),
        "appends": appends,
        "appends_per_s": round(appends / seconds, 1),
        "events_per_append": round(events / appends, 2) if appends else None,
        "waits": wait_figures(sampler.samples),
        "server_cpu_us_per_read": round(server_cpu / requests * 1e6, 1) if requests else None,
        "db_cpu_us_per_read": round(db_cpu / requests * 1e6, 1) if requests else None,
        "sampler_cpu_cores": round((sampler.thread_cpu_s + sampler.backend_cpu_s) / seconds, 3),
        "machine_busy_cores": round(busy / seconds, 2),
        "other_cpu_cores_before": foreign,
    }


def wait_for_quiet(replicas: list[Replica], limit: float, max_wait: float) -> float | None:
    """Wait (at most ``max_wait`` s) until processes other than ours use <= ``limit`` cores."""
    if max_wait <= 0:
        return None
    deadline = time.monotonic() + max_wait
    while True:
        ours = [r.process.pid for r in replicas]
        mine = sum(tree_cpu_seconds(pid) for pid in ours)
        busy = machine_busy_seconds()
        time.sleep(1.0)
        mine = sum(tree_cpu_seconds(pid) for pid in ours) - mine
        foreign = round(max(0.0, machine_busy_seconds() - busy - mine), 2)
        if foreign <= limit or time.monotonic() >= deadline:
            return foreign
        log(f"      other processes keep {foreign:.2f} cores busy; waiting for quiet…")


def verify_chain(env: dict[str, str], directory: Path) -> dict[str, Any]:
    started = time.monotonic()
    done = run_cli(env, directory, "audit", "verify", "--json", timeout=600)
    try:
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        result = {"ok": False, "problem": done.stderr.strip()[-2000:]}
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# -- report --------------------------------------------------------------------------------


def print_report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    where = postgres.network_label(args.delay_ms)
    print()
    print(
        f"Replicas on one PostgreSQL database ({where}), {args.workers} worker(s) each, "
        f"{args.connections} connection(s) per replica, {args.duration} s per run"
    )
    header = (
        f"{'replicas':>8}{'reads/s':>9}{'per replica':>22}{'p99 ms':>8}{'err':>5}"
        f"{'events/s':>10}{'appends/s':>11}{'ev/append':>10}{'lock wait':>11}"
        f"{'queued':>8}{'head busy':>11}{'srv µs/rd':>11}{'db µs/rd':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        waits = run["waits"]
        each = "/".join(f"{r['reads_per_s']:,.0f}" for r in run["per_replica"])
        print(
            f"{run['replicas']:>8}{run['reads_per_s']:>9,.0f}{each:>22}{run['p99_ms_max']:>8.1f}"
            f"{run['non_2xx'] + run['socket_errors']:>5}{run['audit_events_per_s']:>10,.0f}"
            f"{run['appends_per_s']:>11,.0f}{run['events_per_append'] or 0:>10.1f}"
            f"{waits['lock_wait_share']:>11.0%}{waits['appends_queued_mean']:>8.2f}"
            f"{waits['head_busy_share']:>11.0%}{run['server_cpu_us_per_read'] or 0:>11,.0f}"
            f"{run['db_cpu_us_per_read'] or 0:>10,.0f}"
        )
    print(
        "lock wait: share of the time appends spent queued for another append's lock; "
        "queued: appends waiting, on average;\nhead busy: share of the time some append held "
        "its locks; p99: the worst replica's"
    )
    for run in runs:
        shares = run["waits"]["share"]
        parts = ", ".join(f"{state} {shares.get(state, 0):.0%}" for state in STATES)
        replicas = ", ".join(
            f"{app} {figures['lock_wait_share']:.0%}"
            for app, figures in run["waits"]["by_replica"].items()
        )
        print(
            f"  {run['replicas']} replica(s): append time {parts}; lock wait by replica: {replicas}"
        )


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts")
    parser.add_argument("--workers", type=int, default=1, help="workers per replica")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections per replica")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument("--threads", type=int, default=1, help="threads per wrk")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="round trip added between replicas and the database (0: loopback, no proxy)",
    )
    parser.add_argument("--sample-ms", type=float, default=10.0, help="pg_stat_activity period")
    parser.add_argument("--postgres-url", default=postgres.DEFAULT_ADMIN_URL)
    parser.add_argument("--quiet-limit", type=float, default=0.2)
    parser.add_argument("--quiet-wait", type=float, default=60)
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/)")
    args = parser.parse_args(argv)
    args.replicas = sorted({int(c) for c in args.replicas.split(",") if c.strip()})
    if not args.replicas or min(args.replicas) < 1:
        parser.error("--replicas needs positive integers")
    if args.duration < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--duration, --connections and --workers must be at least 1")
    if args.delay_ms < 0 or args.sample_ms <= 0:
        parser.error("--delay-ms must be >= 0 and --sample-ms > 0")
    return args


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(postgres.fresh_database(args.postgres_url, "replicas"))
        port = postgres.port_maybe_delayed(
            stack, PROCS, database, args.delay_ms, tmp / "proxy.log", info
        )
        info["database"] = database.name
        master_key = new_master_key()

        def directory_of(number: int) -> Path:
            directory = tmp / f"replica-{number}"
            directory.mkdir(exist_ok=True)
            return directory

        def env_of(number: int) -> dict[str, str]:
            url = database.url(
                port=port, driver="postgresql+psycopg", application_name=f"bench-replica-{number}"
            )
            return server_env(url, directory_of(number), args.workers, master_key=master_key)

        admin = bootstrap(env_of(1), directory_of(1))
        replicas: list[Replica] = []
        for number in range(1, max(args.replicas) + 1):
            server_port = free_port()
            log(f"starting replica {number} on port {server_port}")
            process, cmd = start_server(
                PROCS, env_of(number), directory_of(number), server_port, args.workers
            )
            stack.callback(PROCS.stop, process)
            replicas.append(Replica(number, f"http://{LOOPBACK}:{server_port}", process, cmd))
        value = "bench-" + secrets.token_urlsafe(24)
        token = reader_token(replicas[0].base, admin, value)
        for replica in replicas:
            check_read(replica.base, token, value)
        log("read checked on every replica (200, right value; 403 outside the grant)")
        header = ("Authorization", f"Bearer {token}")

        db = stack.enter_context(
            psycopg.connect(database.url(application_name="bench-counters"), autocommit=True)
        )
        backends = postgres.BackendCpu(args.postgres_url, database.name)
        stack.callback(backends.close)
        sampler = WaitSampler(args.postgres_url, database.name, args.sample_ms / 1000)
        stack.callback(sampler.close)
        for count in args.replicas:
            log(f"  {count} replica(s): warm-up {args.warmup} s, measuring {args.duration} s…")
            result = measure(count, replicas, header, sampler, db, backends, args)
            runs.append(result)
            waits = result["waits"]
            log(
                f"      {result['reads_per_s']:,.0f} reads/s, "
                f"{result['appends_per_s']:,.0f} appends/s, "
                f"lock wait {waits['lock_wait_share']:.0%} of append time, "
                f"head busy {waits['head_busy_share']:.0%}"
            )
        for replica in replicas:
            check_read(replica.base, token, value)
        info["db_connections_after"] = backends.connections()
        info["chain"] = verify_chain(env_of(1), directory_of(1))
        log(f"audit chain after the runs: {info['chain']}")
        info["replica_commands"] = [" ".join(r.command) for r in replicas]
    return {"info": info, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get update && apt-get install -y wrk")
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_on_signal)
    signal.signal(signal.SIGHUP, raise_on_signal)
    started = datetime.now(UTC)
    tmp = Path(tempfile.mkdtemp(prefix="strongroom-replicas-"))
    try:
        outcome = run(args, tmp)
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        return 130
    finally:
        PROCS.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(outcome["runs"], args)
    chain = outcome["info"]["chain"]
    print(f"audit chain: {'intact' if chain.get('ok') else 'BROKEN'} ({chain})")
    print(f"database connections after the runs: {outcome['info']['db_connections_after']}")
    write_results("replicas", started, args, outcome)
    return 0 if chain.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
