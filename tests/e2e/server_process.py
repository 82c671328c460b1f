"""Run ``strongroom server`` as a real process on a loopback port, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

STRONGROOM = shutil.which("strongroom", path=str(Path(sys.executable).parent)) or "strongroom"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server process with its own environment; ``url`` once started."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        workers: int = 1,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        """``wrapper``: a command that runs the server command given after it (e.g. in a
        mount namespace of its own, see tests/support/tiny_disk.py)."""
        self.env = {**os.environ, **env}
        self.wrapper = list(wrapper)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

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
        # Output to a file, not a pipe: a busy server logs more than a pipe holds (64 KiB), and
        # a pipe nobody reads until stop() would block its workers mid-request.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [
                *self.wrapper,
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
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"server exited early:\n{self._take_output()}")
            try:
                if httpx.get(self.url + "/v1/sys/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 30 s")

    def output(self) -> str:
        """What the server printed so far."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self) -> str:
        if self.process is None:
            return ""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        return self._take_output()

    def _take_output(self) -> str:
        output = self.output()
        if self._output is not None:
            self._output.close()
            self._output = None
        return output
