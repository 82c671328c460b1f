"""kit/logging.py in a process of its own (it configures the process): in JSON mode every line
on stderr is one JSON object, the standard library's records included (uvicorn's with its
``log_config=None``, httpx's, warnings), and an exception nobody caught too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, sys, warnings
    import structlog, uvicorn
    from strongroom.kit.logging import configure_logging

    configure_logging("INFO", sys.argv[1])
    # As the workers build it; uvicorn's default log_config would install its own handlers.
    uvicorn.Config(app=None, log_config=None, log_level="warning")
    structlog.get_logger("strongroom.serving").warning("worker_exited", index=0, signal="SIGKILL")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("httpx").info("HTTP Request: POST https://sts.amazonaws.com/ (quiet)")
    logging.getLogger("httpx").warning("HTTP Request: POST https://sts.amazonaws.com/ failed")
    warnings.warn("something old", UserWarning, stacklevel=1)
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    raise RuntimeError("nobody caught this")
""")


def run(fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_every_line_is_json_in_json_mode() -> None:
    result = run("json")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # each one JSON
    events = [(line.get("logger"), line["level"], line["event"]) for line in lines]
    assert events[:4] == [
        (None, "warning", "worker_exited"),
        ("uvicorn.error", "warning", "Invalid HTTP request received."),
        ("httpx", "warning", "HTTP Request: POST https://sts.amazonaws.com/ failed"),
        ("py.warnings", "warning", events[3][2]),
    ]
    assert "UserWarning: something old" in events[3][2]
    asgi, uncaught = lines[4], lines[5]
    assert asgi["event"] == "Exception in ASGI application"
    assert "ZeroDivisionError" in asgi["exception"]
    assert uncaught["event"] == "uncaught_exception"
    assert "RuntimeError: nobody caught this" in uncaught["exception"]
    assert len(lines) == 6
    assert all("timestamp" in line for line in lines)


def test_console_mode_stays_readable() -> None:
    result = run("console")
    assert "worker_exited" in result.stderr
    assert "Invalid HTTP request received." in result.stderr
    assert not result.stderr.lstrip().startswith("{")
