"""Run a short Python script in a child process of its own and read the JSON it prints: for
changes a test process must not make to itself (scheduling policy, sessions, limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def child_json(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args`` (``sys.argv[1:]``) from the project root; return the JSON
    object it prints. A failing child fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))
