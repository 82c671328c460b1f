"""The login benchmark's figures and its report: percentiles and histogram summaries, the
targets, the table on stdout and the results file (``bench/results/login-<timestamp>.json``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from login_rig import RESULTS_DIR, ROOT

TARGET_ADDED_P50_MS = 3.0
TARGET_BURST_WALL_S = 1.5
TARGET_READ_P99_FACTOR = 2.0


# -- figures -------------------------------------------------------------------------------


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


def report(results: dict[str, Any], started_at: datetime, workers: int) -> bool:
    """Add the targets to ``results``, write them to ``bench/results/login-<start>.json`` and
    print the table; return whether every target was met."""
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
        f"AWS IAM login benchmark, strongroom server --workers {workers}, SQLite, "
        f"{os.cpu_count()} CPUs"
    )
    print_table(rows)
    if results["other_benchmarks_before"] or results["other_benchmarks_after"]:
        print(
            "WARNING: other benchmarks were running:",
            results["other_benchmarks_before"] or results["other_benchmarks_after"],
        )
    print(f"results: {out.relative_to(ROOT)}")
    return all(targets.values())
