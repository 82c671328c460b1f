"""Run ``strongroom server`` as a real process on a loopback port, as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Self

import httpx

from tests.support.login import key_token

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

    def start(self, *extra: str) -> Self:
        """Start ``strongroom server`` (``extra``: more arguments) and return once it answers
        ``/v1/sys/ready``; RuntimeError with its output if it exits or does not answer in
        30 s."""
        with self._output_sink() as sink:
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
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"server exited early:\n{self._take_output()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.answers_ready():
                    self._started()
                    return self
            time.sleep(0.1)
        output = self.stop()
        raise RuntimeError(f"server did not become ready in 30 s:\n{output}")

    def _output_sink(self) -> AbstractContextManager[IO[bytes]]:
        """Where the server's output goes (open for the start only: the child keeps its own
        descriptor). A file, not a pipe: a busy server logs more than a pipe holds (64 KiB),
        and a pipe nobody reads until stop() would block its workers mid-request."""
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        return contextlib.nullcontext(self._output)

    def answers_ready(self) -> bool:
        """``GET /v1/sys/ready`` answers 200 (httpx.HTTPError while nothing listens)."""
        return httpx.get(self.url + "/v1/sys/ready", timeout=1).status_code == 200

    def _started(self) -> None:
        """Called once the server is ready: what a subclass wants to note about it."""

    def bearer(self, credentials: Mapping[str, str], *, timeout: float = 15) -> dict[str, str]:
        """Log in with an access key (``access_id`` and ``access_key``, as :meth:`bootstrap`
        returns them) on a connection of its own; the Authorization header of the token."""
        with httpx.Client(base_url=self.url, timeout=timeout) as http:
            token = key_token(http, credentials["access_id"], credentials["access_key"])
        return {"Authorization": f"Bearer {token}"}

    def client_as(self, credentials: Mapping[str, str], *, timeout: float = 15) -> httpx.Client:
        """An HTTP client of the server with the token of :meth:`bearer`; the caller closes
        it."""
        headers = self.bearer(credentials, timeout=timeout)
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

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
