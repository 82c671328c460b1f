"""The JSON document a benchmark leaves in ``bench/results/``: what ran, with which arguments,
on what machine, and what it measured."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(
    benchmark: str, started: datetime, args: argparse.Namespace, outcome: dict[str, Any]
) -> Path:
    """Write ``outcome`` with the run's context to ``args.output`` or a file named after the
    benchmark and its start time; print and return the path."""
    document = {
        "benchmark": benchmark,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        **outcome,
    }
    stem = benchmark.replace("_", "-")
    output: Path = args.output or RESULTS_DIR / f"{stem}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON: {output}")
    return output
