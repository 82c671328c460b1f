"""What a new login connection costs the worker that passes it to a login process.

    .venv/bin/python bench/login_handoff.py [--rounds 10] [--burst 200] [--repeat 3]

At the start of a burst of logins each worker accepts a hundred connections within milliseconds
and passes them on (``strongroom.serving``); the reads it serves meanwhile wait behind that work.
This measures it: ``strongroom server --workers 1`` (SQLite in a temp dir, login processes on,
``STRONGROOM_LOGIN_INLINE_WHEN_IDLE=false`` so that every login is passed on), then ``--rounds``
bursts of ``--burst`` new connections at once, each sending a login whose body is ``{}`` (the
login process answers 400: the login's own cost is not the point here). The figure is the
worker process's own CPU time (``/proc/<pid>/stat``, not its login processes') over the
bursts, per connection.

Baseline, in the same run against the same worker: the same number of new connections each
sending ``GET /v1/sys/health``, which the worker serves itself (accept, uvicorn's protocol, the
app, the answer). The table gives both and their ratio. ``--repeat`` runs both measurements
that many times, alternating, and reports each run and the median.

Results: a table on stdout, progress on stderr, ``bench/results/login_handoff-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from login import wait_for_login_processes  # noqa: E402
from login_rig import (  # noqa: E402
    LOOPBACK,
    RESULTS_DIR,
    Server,
    log,
    login_handoffs,
    machine_info,
)

LOGIN = (
    b"POST /v1/auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)
HEALTH = b"GET /v1/sys/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
TICKS = os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def one_connection(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(request)
    answer = await reader.read()  # both answers close the connection
    writer.close()
    return answer[:12]


async def burst(port: int, request: bytes, size: int) -> list[bytes]:
    return list(await asyncio.gather(*(one_connection(port, request) for _ in range(size))))


def measure(server: Server, request: bytes, rounds: int, size: int) -> tuple[float, set[bytes]]:
    """Worker CPU seconds per connection over ``rounds`` bursts, and the status lines seen."""
    assert server.process is not None
    pid = server.worker_pids()[0]  # the one worker (its supervisor forked it)
    statuses: set[bytes] = set()
    before = own_cpu_seconds(pid)
    for _ in range(rounds):
        statuses.update(asyncio.run(burst(server.port, request, size)))
        time.sleep(0.2)  # let the login processes finish: their CPU is not counted anyway
    return (own_cpu_seconds(pid) - before) / (rounds * size), statuses


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="bursts per measurement")
    parser.add_argument("--burst", type=int, default=200, help="new connections per burst")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each kind")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    started_at = datetime.now(UTC)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strongroom-handoff-bench-") as directory:
        server = Server(Path(directory), 1, [], ["STRONGROOM_LOGIN_INLINE_WHEN_IDLE=false"])
        server.bootstrap()
        log("starting strongroom server --workers 1")
        server.start()
        try:
            wait_for_login_processes(server)
            asyncio.run(burst(server.port, LOGIN, args.burst))  # warm-up
            asyncio.run(burst(server.port, HEALTH, args.burst))
            for index in range(args.repeat):
                log(f"run {index + 1}/{args.repeat}")
                handed_before = login_handoffs(server)
                login_cpu, login_statuses = measure(server, LOGIN, args.rounds, args.burst)
                handed_after = login_handoffs(server)
                health_cpu, health_statuses = measure(server, HEALTH, args.rounds, args.burst)
                passed = handed_after.get("login_process", 0.0) - handed_before.get(
                    "login_process", 0.0
                )
                runs.append(
                    {
                        "login_us": login_cpu * 1e6,
                        "health_us": health_cpu * 1e6,
                        "logins_passed_on": passed,
                        "logins_sent": args.rounds * args.burst,
                        "login_statuses": sorted(s.decode() for s in login_statuses),
                        "health_statuses": sorted(s.decode() for s in health_statuses),
                    }
                )
        finally:
            server.stop()
    login_median = statistics.median(r["login_us"] for r in runs)
    health_median = statistics.median(r["health_us"] for r in runs)
    print(f"\nWorker CPU per new connection ({args.rounds} bursts of {args.burst}, one worker)")
    print(f"{'run':>5}  {'login passed on':>16}  {'health (baseline)':>18}  {'ratio':>6}  passed")
    for index, r in enumerate(runs, 1):
        ratio = r["login_us"] / r["health_us"]
        passed = f"{r['logins_passed_on']:.0f}/{r['logins_sent']}"
        print(
            f"{index:>5}  {r['login_us']:>13.0f} µs  {r['health_us']:>15.0f} µs  "
            f"{ratio:>6.2f}  {passed}"
        )
    print(
        f"{'median':>5}  {login_median:>13.0f} µs  {health_median:>15.0f} µs  "
        f"{login_median / health_median:>6.2f}"
    )
    print(f"(CPU time has a {1e6 / TICKS / (args.rounds * args.burst):.0f} µs resolution here)")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"login_handoff-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    results = {
        "benchmark": "login_handoff",
        "started_at": started_at.isoformat(),
        "args": vars(args),
        "machine": machine_info(),
        "runs": runs,
        "median": {"login_us": login_median, "health_us": health_median},
    }
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out.relative_to(BENCH_DIR.parent)}")
    everything_passed = all(r["logins_passed_on"] == r["logins_sent"] for r in runs)
    return 0 if everything_passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
