"""wrk for the benches: the command line and what its summary line says.

The Lua script (``wrk_report.lua``) sends one GET with an optional header taken from the
environment (so tokens never appear on a command line) and prints a ``BENCH_JSON`` line at the
end; :func:`parse` turns it into the figures every bench reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"


def command(url: str, connections: int, duration: float, threads: int = 1) -> list[str]:
    return [
        "wrk",
        "-t", str(max(1, min(threads, connections))),
        "-c", str(connections),
        "-d", f"{duration}s",
        "--timeout", "5s",
        "-s", str(LUA_SCRIPT),
        url,
    ]  # fmt: skip


def environment(header: tuple[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if header is not None:
        env["BENCH_HEADER_NAME"], env["BENCH_HEADER_VALUE"] = header
    return env


def parse(out: str) -> dict[str, Any] | None:
    """The figures of wrk's summary line in ``out`` (None if there is none)."""
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        return None
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    requests = raw["requests"]
    return {
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
        "socket_errors": sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write")),
        "timeouts": raw["errors_timeout"],
    }
