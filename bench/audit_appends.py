"""Audit appends per second as appending processes are added, on one PostgreSQL database: chains
per writer (each process appends to its own) against one shared chain, in the same run.

    .venv/bin/python bench/audit_appends.py [--processes 1,2,3] [--batch 8] [--duration 5]
        [--delay-ms 0] [--sample-ms 10] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--output PATH]

What ``bench/replicas.py`` cannot show on a machine whose cores the replicas' reads fill: how
many appends the audit trail itself takes, whatever serves the requests. Each appending process
is a plain Python process that does nothing else: in a loop, one write transaction holding one
``Appender.append`` of ``--batch`` events (8: the batch a replica's group commit made in
``replicas.py``), as a server's group commit does. All of them start together and run for
``--duration`` seconds; ``--delay-ms`` puts their connections behind ``bench/tcp_proxy.py``
(``--delay-ms 1``: a managed PostgreSQL about a millisecond away).

Two modes, each with 1, 2 and 3 processes (``--processes``):

- ``chains``: what the server does (``audit/store.py``): every process appends to writers of
  its own; no append waits for another process's.
- ``single``: the single chain of revisions before 0004, emulated: every process appends to
  one shared writer, and each append locks its head row from its first statement until its
  commit (the same three statements per batch as before: move the head, insert, set its link),
  so appends of all processes take turns, as they did on ``audit_chain_head``.

Meanwhile ``replicas.py``'s sampler polls ``pg_stat_activity`` (``--sample-ms``) and reports the
share of append time spent waiting for a lock. After each run ``verify_chain`` checks every
chain in one snapshot (it must be intact). Results: a table on stdout,
``bench/results/audit-appends-<timestamp>.json``. Every process started here is stopped on exit;
the database is dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import postgres
from processes import Processes, raise_on_signal
from replicas import WaitSampler, wait_figures
from results_file import write_results

from strongroom.audit.chain import ChainKey
from strongroom.audit.event import AuditEvent
from strongroom.audit.store import _POSTGRES_TAKE, Appender, seal_anchor
from strongroom.audit.verification import verify_chain
from strongroom.db import migrate
from strongroom.db.engine import Database

PROCS = Processes()
MODES = ("chains", "single")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def batch_of(size: int) -> list[AuditEvent]:
    events = []
    for n in range(size):
        event = AuditEvent(
            time=datetime.now(UTC),
            request_id=f"bench-{n:04d}",
            source_ip="203.0.113.7",
            action="secret.read",
            path="/bench/db-password",
            access_id="p-bench0000000",
            token_digest="d" * 64,
        )
        event.finish(200)
        events.append(event)
    return events


class SharedChain(Appender):
    """Every process on one writer, waiting for its head row's lock (the ``single`` mode)."""

    def __init__(self, key: ChainKey, writer: int) -> None:
        super().__init__(key, "bench: shared")
        self._shared = writer

    def _take(self, cursor: Any, sqlite: bool, count: int) -> tuple[Any, ...] | None:
        # The by-id statement waits for the row's lock where the server's skips a locked row.
        cursor.execute(_POSTGRES_TAKE, (count, self._shared, count))
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def child(args: argparse.Namespace) -> int:
    """One appending process: appends until the deadline, prints what it did."""
    key = ChainKey(bytes.fromhex(os.environ["BENCH_CHAIN_KEY"]))
    database = Database.from_url(args.url)
    appender: Appender = (
        Appender(key, f"bench: pid {os.getpid()}")
        if args.mode == "chains"
        else SharedChain(key, args.shared)
    )
    events = batch_of(args.batch)
    with database.write() as connection:  # connected, and its writer open, before the start
        appender.append(connection, events)
    time.sleep(max(0.0, args.start - time.time()))
    deadline = args.start + args.duration
    appends = 0
    while time.time() < deadline:
        with database.write() as connection:
            appender.append(connection, events)
        appends += 1
    seconds = time.time() - args.start
    appender.close(database)
    database.dispose()
    print(json.dumps({"appends": appends, "seconds": seconds}))
    return 0


def run_mode(
    mode: str,
    count: int,
    url: str,
    key_hex: str,
    shared: int,
    sampler: WaitSampler,
    args: argparse.Namespace,
) -> dict[str, Any]:
    start = time.time() + 2.0  # every process connected and ready by then
    env = {**os.environ, "BENCH_CHAIN_KEY": key_hex}
    command = [
        sys.executable, __file__, "--child", "--url", url, "--mode", mode,
        "--batch", str(args.batch), "--duration", str(args.duration),
        "--start", repr(start), "--shared", str(shared),
    ]  # fmt: skip
    children = [
        PROCS.spawn(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    time.sleep(max(0.0, start - time.time()))
    with sampler:
        outputs = [c.communicate(timeout=args.duration + 60) for c in children]
    done = []
    for process, (out, err) in zip(children, outputs, strict=True):
        PROCS.stop(process, grace=2)
        if process.returncode != 0:
            raise RuntimeError(f"an appending process failed:\n{err[-3000:]}")
        done.append(json.loads(out.strip().splitlines()[-1]))
    appends = sum(d["appends"] for d in done)
    seconds = max(d["seconds"] for d in done)
    return {
        "mode": mode,
        "processes": count,
        "appends": appends,
        "appends_per_s": round(appends / seconds, 1),
        "events_per_s": round(appends * args.batch / seconds, 1),
        "per_process": [round(d["appends"] / d["seconds"], 1) for d in done],
        "waits": wait_figures(sampler.samples),
    }


def verified(url: str, key: ChainKey) -> dict[str, Any]:
    database = Database.from_url(url)
    try:
        with database.snapshot() as connection:
            result = verify_chain(connection, key)
    finally:
        database.dispose()
    return {
        "ok": result.broken is None,
        "problem": result.broken.problem if result.broken else None,
        "checked": result.checked,
        "writers": result.writers,
        "open_writers": result.open_writers,
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    key_hex = os.urandom(32).hex()
    key = ChainKey(bytes.fromhex(key_hex))
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(postgres.fresh_database(args.postgres_url, "appends"))
        port = postgres.port_maybe_delayed(
            stack, PROCS, database, args.delay_ms, tmp / "proxy.log", info
        )
        url = database.url(port=port, driver="postgresql+psycopg", application_name="bench")
        store = Database.from_url(url)
        migrate.upgrade(store)
        seal_anchor(store, key)
        shared = Appender(key, "bench: the shared writer")
        with store.write() as connection:
            shared.append(connection, batch_of(1))
        shared_writer = shared.writers[0]
        store.dispose()
        sampler = WaitSampler(args.postgres_url, database.name, args.sample_ms / 1000)
        stack.callback(sampler.close)
        for mode in args.modes:
            for count in args.processes:
                log(f"  {mode}, {count} process(es): {args.duration} s…")
                result = run_mode(mode, count, url, key_hex, shared_writer, sampler, args)
                runs.append(result)
                log(
                    f"      {result['appends_per_s']:,.0f} appends/s, lock wait "
                    f"{result['waits']['lock_wait_share']:.0%} of append time"
                )
        info["chain"] = verified(url, key)
        log(f"audit chains after the runs: {info['chain']}")
    return {"info": info, "runs": runs}


def print_report(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    where = postgres.network_label(args.delay_ms)
    print()
    print(
        f"Audit appends on one PostgreSQL database ({where}), {args.batch} events per append, "
        f"{args.duration} s per run"
    )
    header = (
        f"{'mode':>8}{'processes':>11}{'appends/s':>11}{'events/s':>10}{'per process':>24}"
        f"{'vs 1 process':>14}{'lock wait':>11}"
    )
    print(header)
    print("-" * len(header))
    alone: dict[str, float] = {}
    for run in runs:
        if run["processes"] == 1:
            alone[run["mode"]] = run["appends_per_s"]
        base = alone.get(run["mode"])
        ratio = f"{run['appends_per_s'] / base:.2f}" if base else "-"
        each = "/".join(f"{a:,.0f}" for a in run["per_process"])
        print(
            f"{run['mode']:>8}{run['processes']:>11}{run['appends_per_s']:>11,.0f}"
            f"{run['events_per_s']:>10,.0f}{each:>24}{ratio:>14}"
            f"{run['waits']['lock_wait_share']:>11.0%}"
        )
    print(
        "chains: each process appends to its own writer (the server's way); single: one shared "
        "writer, as before revision 0004.\nlock wait: share of the time appends spent queued "
        "for another append's lock"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,3", help="comma-separated process counts")
    parser.add_argument("--modes", default=",".join(MODES), help="chains, single or both")
    parser.add_argument("--batch", type=int, default=8, help="events per append")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="round trip added (proxy)")
    parser.add_argument("--sample-ms", type=float, default=10.0, help="pg_stat_activity period")
    parser.add_argument("--postgres-url", default=postgres.DEFAULT_ADMIN_URL)
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default results/)")
    # An appending process (started by this script).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--shared", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        args.processes = sorted({int(c) for c in args.processes.split(",") if c.strip()})
        args.modes = [m for m in args.modes.split(",") if m]
        if not args.processes or min(args.processes) < 1 or set(args.modes) - set(MODES):
            parser.error("--processes needs positive integers, --modes chains and/or single")
    if args.batch < 1 or args.duration <= 0 or args.delay_ms < 0 or args.sample_ms <= 0:
        parser.error("--batch >= 1, --duration > 0, --delay-ms >= 0, --sample-ms > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_on_signal)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="strongroom-appends-") as tmp:
        try:
            outcome = run(args, Path(tmp))
        except KeyboardInterrupt:
            log("interrupted: stopping")
            return 130
        finally:
            PROCS.stop_all()
    print_report(outcome["runs"], args)
    chain = outcome["info"]["chain"]
    print(f"audit chains: {'intact' if chain['ok'] else 'BROKEN'} ({chain})")
    write_results("audit_appends", started, args, outcome)
    return 0 if chain["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
