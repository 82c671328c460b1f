"""Logs and metrics of a real ``strongroom server`` (two workers, a login process): in JSON mode
every line it writes is one JSON object (its own events, uvicorn's, httpx's request lines at
LOG_LEVEL=DEBUG, the start-up line); a worker that dies is logged, counted and restarted; and
``/metrics``, whichever process answers, describes every process of the server."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from strongroom import __version__
from tests.e2e.test_login_processes import Server, fresh_login, key_login_body, wait_until
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    server: Server
    admin: httpx.Client
    admin_body: bytes


@pytest.fixture(scope="module")
def stack(moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("observability")
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
        "STRONGROOM_LOG_FORMAT": "json",
        # Everything a process may say, the libraries' chatter included: all of it JSON.
        "STRONGROOM_LOG_LEVEL": "DEBUG",
        "STRONGROOM_LOGIN_PROCESSES": "1",
    }
    server = Server(env, workers=2, cwd=root)
    credentials = server.bootstrap()
    body = key_login_body(credentials["access_id"], credentials["access_key"])
    server.start()
    try:
        with server.client_as(credentials) as admin:
            yield Stack(server, admin, body)
    finally:
        log = server.stop()
        assert not server.kill_leftovers()
        assert credentials["access_key"] not in log


def log_lines(server: Server) -> list[dict[str, Any]]:
    """Every line the server wrote, each parsed as JSON (a line that is not fails the test)."""
    lines = []
    for number, line in enumerate(server.log().splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
    return lines


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def processes(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """{"worker 0": start time, …} from the process metrics."""
    return {
        f"{dict(labels)['kind']} {dict(labels)['index']}": value
        for (name, labels), value in samples.items()
        if name == "strongroom_process_start_time_seconds"
    }


def test_every_line_is_json_including_libraries_and_start_up(stack: Stack, moto: MotoWorld) -> None:
    admin = stack.admin
    method = admin.post(
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "iamLogs",
            "bound_aws_account_id": ["123456789012"],
            "sts_url": moto.server.url,
        },
    ).json()
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    login = httpx.post(
        stack.server.url + "/v1/auth/login",
        json={
            "access_id": method["access_id"],
            "access_type": "aws_iam",
            "cloud_id": signed["cloud_id"],
        },
        timeout=15,
    )
    assert login.status_code == 200, login.text

    def logged() -> list[dict[str, Any]]:
        lines = log_lines(stack.server)
        return lines if any(line.get("logger") == "httpx" for line in lines) else []

    lines = wait_until(logged, 10, "httpx's request line was not logged")
    for line in lines:
        assert {"event", "level", "timestamp"} <= set(line), line
    started = next(line for line in lines if line["event"] == "server_listening")
    assert started["url"] == f"http://127.0.0.1:{stack.server.port}"
    assert (started["workers"], started["login_processes"]) == (2, 1)
    # The standard library's records, JSON like the rest: httpx's request line of the STS
    # round trip (in the worker), alembic's migration check (in the supervisor, at start).
    sts = [line for line in lines if line.get("logger") == "httpx"]
    assert any("HTTP Request: POST" in line["event"] for line in sts), sts
    assert any(line.get("logger", "").startswith("alembic") for line in lines)


def test_a_killed_worker_is_logged_counted_and_restarted(stack: Stack) -> None:
    server = stack.server
    before = metrics(server.url)
    started = processes(before)
    assert set(started) == {"supervisor 0", "worker 0", "worker 1", "login_process 0"}
    victim = next(pid for pid in server.workers_pids())
    os.kill(victim, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        lines = log_lines(server)
        return next(
            (line for line in lines if line["event"] == "worker_restarted"),
            None,
        )

    line = wait_until(restarted, 30, "no worker_restarted line")
    assert line["previous_pid"] == victim
    assert line["pid"] != victim
    exited = next(line for line in log_lines(server) if line["event"] == "worker_exited")
    assert (exited["pid"], exited["signal"], exited["level"]) == (victim, "SIGKILL", "warning")
    assert exited["restart_in_seconds"] > 0

    def replaced() -> dict[str, float] | None:
        found = processes(metrics(server.url))
        return found if len(found) == 4 and found != started else None

    after = wait_until(replaced, 30, "the restarted worker is not in /metrics")
    # One worker started again (later than before); the others are the same processes.
    changed = {name for name in after if after[name] != started[name]}
    assert len(changed) == 1
    assert next(iter(changed)).startswith("worker ")
    key = ("strongroom_process_exits_total", (("how", "signal"), ("kind", "worker")))
    assert metrics(server.url)[key] == before.get(key, 0) + 1


def test_metrics_describe_the_build_every_process_and_logins(stack: Stack) -> None:
    server = stack.server
    before = metrics(server.url)
    # A fresh login (handed to the login process), and one that fails.
    assert fresh_login(server.url, stack.admin_body).status_code == 200
    wrong = json.loads(stack.admin_body)
    wrong["access_key"] = "not-the-key"
    assert fresh_login(server.url, json.dumps(wrong).encode()).status_code == 401
    after = metrics(server.url)
    build = [labels for name, labels in after if name == "strongroom_build_info"]
    assert len(build) == 1
    assert dict(build[0])["version"] == __version__

    def logins(samples: dict[Any, float], outcome: str) -> float:
        key = ("strongroom_logins_total", (("method", "api_key"), ("outcome", outcome)))
        return samples.get(key, 0.0)

    assert logins(after, "success") == logins(before, "success") + 1
    assert logins(after, "denied") == logins(before, "denied") + 1
    for kind in ("supervisor 0", "worker 0", "worker 1", "login_process 0"):
        name, index = kind.rsplit(" ", 1)
        labels = (("index", index), ("kind", name))
        assert after[("strongroom_process_resident_memory_bytes", labels)] > 10 * 2**20
        assert after[("strongroom_process_cpu_seconds_total", labels)] > 0
        assert after[("strongroom_process_open_fds", labels)] > 3
    # Whichever worker answers, the figures are the server's (the same process set).
    assert processes(metrics(server.url)).keys() == processes(after).keys()
