"""Run ``strongroom server`` as a real process on a loopback port, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

STRONGROOM = shutil.which("strongroom", path=str(Path(sys.executable).parent)) or "strongroom"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server process with its own environment; ``url`` once started."""

    def __init__(
        self, env: Mapping[str, str], *, workers: int = 1, cwd: Path | None = None
    ) -> None:
        self.env = {**os.environ, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRONGROOM, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def bootstrap(self) -> dict[str, str]:
        result = self.run_cli("bootstrap", "--json")
        return dict(json.loads(result.stdout))

    def start(self, *extra: str) -> ServerProcess:
        self.process = subprocess.Popen(
            [
                STRONGROOM,
                "server",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                *extra,
            ],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"server exited early:\n{output}")
            try:
                if httpx.get(self.url + "/v1/sys/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 30 s")

    def stop(self) -> str:
        if self.process is None:
            return ""
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        self.process = None
        return output.decode(errors="replace") if output else ""
