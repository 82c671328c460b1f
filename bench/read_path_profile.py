"""Where a Strongroom secret read spends its time: py-spy on every server process under wrk load.

    .venv/bin/pip install py-spy   # once; not a project dependency
    .venv/bin/python bench/read_path_profile.py [--workers 1] [--connections 16] [--duration 10]
                                                [--file-audit] [--idle] [--top 30]
                                                [--postgres [--delay-ms 1.0]]

Starts ``strongroom server`` exactly as ``read_path.py`` does (temp SQLite, NON-admin reader
token), drives ``GET /v1/secrets/bench/db-password`` with wrk on 127.0.0.1, and samples every
process of the server's process group with ``py-spy record --threads`` meanwhile. Prints the
functions with the most samples, inclusive and self, as a share of all samples; ``--idle`` also
counts threads that wait (lock sleeps, selects), which shows wall time rather than CPU. The
merged collapsed stacks are kept in ``bench/results/`` for a flame graph.

In each worker a read runs entirely on the event-loop thread: the two ``HotReader`` queries,
decrypt, and the audit group commit (``AuditWriter._flush_inline`` → ``Appender.append``). Other
threads are the ``wal-checkpoint`` thread (``Checkpointer``) and asyncio's ``to_thread``
workers, which show up when an audit commit is handed off because another writer held the lock
(``WriterBusyError``). For the cost of each step without HTTP, see ``read_path_steps.py``.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import read_path as rp
from processes import proc_stats

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def group_pids(pgid: int) -> list[int]:
    return sorted(stat.pid for stat in proc_stats() if stat.pgrp == pgid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--file-audit", action="store_true")
    parser.add_argument("--idle", action="store_true", help="count waiting threads too")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--postgres", action="store_true", help="a fresh PostgreSQL database, not SQLite"
    )
    parser.add_argument("--postgres-url", default=rp.postgres.DEFAULT_ADMIN_URL)
    parser.add_argument(
        "--delay-ms", type=float, default=None, help="PostgreSQL through bench/tcp_proxy.py"
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(rp.VENV_BIN)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is missing: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2

    key = "strongroom-file" if args.file_audit else "strongroom"
    plan = None
    if args.postgres:
        key = "strongroom-pg" if args.delay_ms is None else "strongroom-pg-proxy"
        plan = rp.PostgresPlan(admin_url=args.postgres_url, delay_ms=args.delay_ms)
    tmp_root = Path(tempfile.mkdtemp(prefix="strongroom-profile-"))
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    try:
        server = rp.ServerOptions(args.workers, file_audit=args.file_audit)
        with rp.strongroom_target(key, tmp_root, server, plan) as t:
            t.check()
            rp.run_wrk(t, args.connections, 2, 1)  # warm-up
            pids = group_pids(t.process.pid)
            rp.log(f"profiling pids {pids} for {args.duration} s at {args.connections} conns")
            outputs = [tmp_root / f"pyspy-{pid}.txt" for pid in pids]
            spy_options = ["--duration", str(args.duration), "--rate", str(args.rate)]
            spy_options += ["--format", "raw", "--threads", "--nonblocking"]
            spy_options += ["--idle"] if args.idle else []
            spies = [
                rp.PROCS.spawn(
                    [py_spy, "record", "--pid", str(pid), *spy_options, "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, out in zip(pids, outputs, strict=True)
            ]
            result: dict[str, object] = {}
            load = threading.Thread(
                target=lambda: result.update(rp.run_wrk(t, args.connections, args.duration, 1))
            )
            load.start()
            for spy in spies:
                spy.wait(timeout=args.duration + 60)
            load.join()
            rp.log(
                f"under profiling: {result['reads_per_s']:,.0f} reads/s, "
                f"p99 {result['p99_ms']:.2f} ms (py-spy slows the server; compare shares only)"
            )
            for out in outputs:
                if not out.exists():
                    continue
                for line in out.read_text().splitlines():
                    body, _, count = line.rpartition(" ")
                    if body and count.isdigit():
                        stacks[tuple(short(f) for f in body.split(";"))] += int(count)
    finally:
        rp.PROCS.stop_all()
        shutil.rmtree(tmp_root, ignore_errors=True)

    total = sum(stacks.values())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        threads[stack[0]] += count
        for frame in set(stack[1:]):
            inclusive[frame] += count
        self_time[stack[-1]] += count
    print(f"{total:,} samples ({'wall, idle included' if args.idle else 'CPU'})")
    print("\nby thread:")
    for name, count in threads.most_common(8):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\ninclusive:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nself:")
    for name, count in self_time.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    rp.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folded = rp.RESULTS_DIR / f"read_path_profile-{stamp}.folded"
    folded.write_text("".join(f"{';'.join(s)} {c}\n" for s, c in stacks.items()))
    print(f"\ncollapsed stacks: {folded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
