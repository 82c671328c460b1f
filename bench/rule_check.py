"""The no-escalation check's budget: what it costs at worst, and what an attack on it costs
everyone else (SPEC section 4, "A check too costly to decide within a fixed budget is refused
with 400 RuleTooComplex; it never stalls the server").

    .venv/bin/python bench/rule_check.py [--server] [--reads 2000] [--attackers 4]

Part 1 (always): crafted rule sets, each family grown until its check runs out of the budget
(``strongroom.rbac.budget.CHECK_BUDGET_STEPS``). For each check: its outcome (covered, not
covered, or RuleTooComplex), the steps it took, and its time, as the CPU time of the thread
that ran it (what it costs the server, whatever else runs on the machine) and as wall time.
The summary gives the worst case accepted (the most costly check that finished within the
budget) and the worst case refused (the most costly check that ran out of it).

Part 2 (``--server``): a real ``strongroom server`` (one worker, SQLite in a temp dir). A
reader reads one secret ``--reads`` times alone, then again while ``--attackers`` clients
keep sending the PUT that runs out of the budget (the caller's own role holds wildcard-dense
deny rules); the read latencies (p50, p99, max) of both runs are printed side by side, with
how many attack PUTs were answered and how. Traffic goes only to 127.0.0.1; the server runs
in its own process group and is stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from strongroom.errors import RuleTooComplexError
from strongroom.rbac import Capability, Rule, RuleSet, RuleType
from strongroom.rbac.budget import CHECK_BUDGET_STEPS, Budget

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CHARS = string.ascii_letters + string.digits + "_-"
READ = frozenset({Capability.READ})


def _rule(path: str, *capabilities: Capability) -> Rule:
    return Rule(RuleType.ITEM, path, frozenset(capabilities or (Capability.READ,)))


def _dense(n: int) -> list[str]:
    orders = list(itertools.permutations("abcdef"))[::37]
    return ["/*" + "*".join(order) + "*/x" for order in orders[:n]]


# family -> size -> (caller's rules, candidate pattern)
FAMILIES: dict[str, Callable[[int], tuple[list[Rule], str]]] = {
    # The attack of the issue: wildcard-dense denies in the caller's own role.
    "dense denies": lambda n: (
        [_rule("/*"), *(_rule(p, Capability.DENY) for p in _dense(n))],
        "/+",
    ),
    # Wildcard-dense grants the candidate is measured against.
    "dense grants": lambda n: (
        [_rule("/*" + "*".join(o) + "*") for o in list(itertools.permutations("abcde"))[:n]],
        "/*a*b*c*d*e*x",
    ),
    # Long literals between two stars: few wildcards, many subsets.
    "long literals": lambda n: (
        [_rule("/*" + CHARS[i : i + 20] + "*") for i in range(n)],
        "/*" + CHARS[:30] + "*",
    ),
    # Many patterns that each name a different first character (a wide alphabet).
    "first-character fan-out": lambda n: (
        [_rule("/" + c + d + "*") for c in CHARS[:n] for d in CHARS[:12]],
        "/+/+/+/+/+/+/+/+",
    ),
    # Segment wildcards in every combination.
    "segment wildcards": lambda n: (
        [
            _rule("/" + "/".join("+" if (i >> j) & 1 else "x" for j in range(8)) + "/*")
            for i in range(n)
        ],
        "/+/+/+/+/+/+/+/+/*",
    ),
}
SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]


def measure(rules: list[Rule], candidate: str) -> tuple[str, int, float, float]:
    """(outcome, steps, CPU ms, wall ms) of one check with the server's budget."""
    caller = RuleSet(rules, {})
    budget = Budget()
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        outcome = (
            "covered"
            if caller.covers(RuleType.ITEM, candidate, READ, NOW, budget=budget)
            else "not covered"
        )
    except RuleTooComplexError:
        outcome = "RuleTooComplex"
    return (
        outcome,
        budget.spent,
        (time.thread_time() - cpu) * 1000,
        (time.perf_counter() - wall) * 1000,
    )


def pure_part() -> dict[str, Any]:
    print(f"budget: {CHECK_BUDGET_STEPS} steps\n")
    print(f"{'family':26} {'size':>4} {'outcome':>15} {'steps':>8} {'CPU ms':>7} {'wall ms':>7}")
    worst: dict[str, tuple[float, float, str]] = {}
    for family, build in FAMILIES.items():
        for size in SIZES:
            rules, candidate = build(size)
            outcome, steps, cpu, wall = measure(rules, candidate)
            print(f"{family:26} {size:4} {outcome:>15} {steps:8} {cpu:7.1f} {wall:7.1f}")
            kind = "refused" if outcome == "RuleTooComplex" else "accepted"
            if cpu > worst.get(kind, (0.0, 0.0, ""))[0]:
                worst[kind] = (cpu, wall, f"{family}, size {size}")
            if outcome == "RuleTooComplex":
                break  # larger sizes only run out of the budget the same way
    print()
    for kind in ("accepted", "refused"):
        cpu, wall, what = worst.get(kind, (0.0, 0.0, "none"))
        print(f"worst case {kind}: {cpu:.1f} ms CPU ({wall:.1f} ms wall), {what}")
    return {kind: {"cpu_ms": v[0], "wall_ms": v[1], "case": v[2]} for kind, v in worst.items()}


# -- part 2: a real server under attack ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(directory: Path) -> Iterator[tuple[str, dict[str, str]]]:
    strongroom = shutil.which("strongroom", path=str(Path(sys.executable).parent)) or "strongroom"
    env = {
        **os.environ,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{directory / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_LOG_LEVEL": "WARNING",
    }
    boot = subprocess.run(
        [strongroom, "bootstrap", "--json"], env=env, capture_output=True, text=True, check=True
    )
    port = _free_port()
    process = subprocess.Popen(
        [strongroom, "server", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            ready = False
            with suppress(httpx.HTTPError):
                ready = httpx.get(url + "/v1/sys/ready", timeout=1).status_code == 200
            if ready:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not become ready")
        yield url, json.loads(boot.stdout)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _login(url: str, key: dict[str, str]) -> httpx.Client:
    token = httpx.post(
        url + "/v1/auth/login",
        json={
            "access_id": key["access_id"],
            "access_type": "access_key",
            "access_key": key["access_key"],
        },
    ).json()["token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _setup(url: str, admin_key: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    with _login(url, admin_key) as admin:

        def ok(method: str, path: str, body: dict[str, Any]) -> Any:
            response = admin.request(method, path, json=body)
            response.raise_for_status()
            return response.json()

        ok("POST", "/v1/secrets", {"name": "/bench/value", "value": "v"})
        ok("POST", "/v1/roles", {"name": "reader"})
        ok("PUT", "/v1/roles/reader/rules", {"path": "/bench/*", "capabilities": ["read"]})
        ok("POST", "/v1/roles", {"name": "attacker"})
        ok("PUT", "/v1/roles/attacker/rules", {"path": "/*", "capabilities": ["read"]})
        ok(
            "PUT",
            "/v1/roles/attacker/rules",
            {"rule_type": "role-rule", "path": "/attacker", "capabilities": ["update"]},
        )
        for pattern in _dense(8):
            ok("PUT", "/v1/roles/attacker/rules", {"path": pattern, "capabilities": ["deny"]})
        keys = []
        for role in ("reader", "attacker"):
            keys.append(ok("POST", "/v1/auth-methods", {"type": "api_key", "name": f"{role}-key"}))
            ok("POST", f"/v1/roles/{role}/associations", {"auth_method": f"{role}-key"})
    return keys[0], keys[1]


def _latencies(reader: httpx.Client, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = reader.get("/v1/secrets/bench/value")
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"read answered {response.status_code}: {response.text}")
    return times


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms  max {ordered[-1]:6.2f} ms"


def server_part(reads: int, attackers: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as directory,
        running_server(Path(directory)) as (url, admin),
    ):
        reader_key, attacker_key = _setup(url, admin)
        with _login(url, reader_key) as reader:
            _latencies(reader, 200)  # warm-up
            alone = _latencies(reader, reads)
            stop = threading.Event()
            answers: dict[str, int] = {}

            def attack() -> None:
                with _login(url, attacker_key) as attacker:
                    while not stop.is_set():
                        response = attacker.put(
                            "/v1/roles/attacker/rules",
                            json={"path": "/+", "capabilities": ["read"]},
                        )
                        code = f"{response.status_code} {response.json().get('error')}"
                        answers[code] = answers.get(code, 0) + 1

            with ThreadPoolExecutor(attackers) as pool:
                for _ in range(attackers):
                    pool.submit(attack)
                time.sleep(0.5)
                attacked = _latencies(reader, reads)
                stop.set()
    print(f"\nreads alone:          {_summary(alone)}")
    print(f"reads under attack:   {_summary(attacked)}")
    print(f"attack PUTs answered: {answers}")
    return {"alone": sorted(alone), "attacked": sorted(attacked), "attack_answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="store_true", help="also attack a real server")
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--attackers", type=int, default=4)
    args = parser.parse_args()
    pure_part()
    if args.server:
        server_part(args.reads, args.attackers)


if __name__ == "__main__":
    main()
