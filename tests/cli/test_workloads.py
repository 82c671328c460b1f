"""Workloads as a user runs them: ``get-cloud-identity`` with curl, ``run`` and ``agent``.

Everything goes through the installed executable as a subprocess, against the session's real
server, with moto's STS checking signatures; the instance's IAM role is the only credential.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import ACCOUNT_ID, AwsWorld, Cli, RunningServer, clean_environ
from tests.e2e.server_process import STRONGROOM

pytestmark = pytest.mark.slow

ROLE = "workloads"
METHOD = "workloadsIam"


@dataclass
class Workload:
    """An instance profile configured for an aws_iam auth method that reads /wl/*."""

    cli: Cli
    access_id: str
    server: RunningServer

    def write_secret(self, name: str, value: str) -> int:
        """Create or update ``name`` as the admin; return the new version."""
        admin = self.server.admin
        response = admin.http.put(f"/v1/secrets{name}", json={"value": value})
        if response.status_code == 404:
            response = admin.http.post("/v1/secrets", json={"name": name, "value": value})
        assert response.status_code in (200, 201), response.text
        return int(response.json()["version"])


@pytest.fixture(scope="module")
def workload_setup(server: RunningServer, aws: AwsWorld) -> str:
    admin = server.admin
    created = admin.call(
        "POST",
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": METHOD,
            "bound_aws_account_id": [ACCOUNT_ID],
            "bound_role_name": ["app-role"],
            "sts_url": aws.url,
            # Two minutes: the agent's test of a login before expiry stays short.
            "jwt_ttl": 2,
        },
    )
    admin.call("POST", "/v1/roles", json={"name": ROLE})
    admin.call("POST", f"/v1/roles/{ROLE}/associations", json={"auth_method": METHOD})
    admin.call(
        "PUT",
        f"/v1/roles/{ROLE}/rules",
        json={"path": "/wl/*", "capabilities": ["read", "list"]},
    )
    for name, value in {
        "/wl/db-password": "pw-1",
        "/wl/api.key": "key-1",
        "/wl/config": '{"user": "app", "port": 5432}',
    }.items():
        admin.call("POST", "/v1/secrets", json={"name": name, "value": value})
    # Outside the grant: never reaches the workload.
    admin.call("POST", "/v1/secrets", json={"name": "/other/secret", "value": "nope"})
    return str(created["access_id"])


@pytest.fixture
def workload(server: RunningServer, aws: AwsWorld, workload_setup: str, tmp_path: Path) -> Workload:
    cli = Cli(tmp_path / "home", {"STRONGROOM_URL": server.url, **aws.app.credentials.environ()})
    configured = cli.run(
        "configure", "--access-id", workload_setup, "--access-type", "aws_iam",
        "--aws-sts-url", aws.url,
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr
    return Workload(cli, workload_setup, server)


# -- get-cloud-identity --------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_get_cloud_identity_logs_in_with_curl(workload: Workload, aws: AwsWorld) -> None:
    """The README's HTTP login: the signed cloud_id, posted with curl, gives a token."""
    script = (
        'curl -sS --fail-with-body "$STRONGROOM/v1/auth/login" '
        "-H 'Content-Type: application/json' "
        '-d \'{"access_id": "\'"$ACCESS_ID"\'", "access_type": "aws_iam", '
        '"cloud_id": "\'"$(strongroom get-cloud-identity --aws-sts-url "$STS")"\'"}\''
    )
    env = clean_environ(
        {
            "STRONGROOM": workload.server.url,
            "ACCESS_ID": workload.access_id,
            "STS": aws.url,
            "PATH": f"{Path(STRONGROOM).parent}{os.pathsep}{os.environ['PATH']}",
            **aws.app.credentials.environ(),
        }
    )
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    login = json.loads(result.stdout)
    assert login["token"].startswith("t-")
    assert login["identity"]["role_name"] == "app-role"
    assert login["roles"] == [ROLE]


def test_get_cloud_identity_is_single_use(workload: Workload, aws: AwsWorld) -> None:
    """A printed cloud_id is a one-time proof: the server refuses it the second time."""
    printed = workload.cli.run("get-cloud-identity", "--json")
    assert printed.returncode == 0, printed.stderr
    cloud_id = json.loads(printed.stdout)["cloud_id"]
    body = {"access_id": workload.access_id, "access_type": "aws_iam", "cloud_id": cloud_id}
    first = httpx.post(f"{workload.server.url}/v1/auth/login", json=body, timeout=30)
    assert first.status_code == 200, first.text
    again = httpx.post(f"{workload.server.url}/v1/auth/login", json=body, timeout=30)
    assert again.status_code == 401


def test_get_cloud_identity_without_credentials_says_what_to_do(tmp_path: Path) -> None:
    result = Cli(tmp_path / "home").run("get-cloud-identity")
    assert result.returncode == 1
    assert "no AWS credentials found" in result.stderr
    assert "hint:" in result.stderr


# -- run -----------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_puts_secrets_in_the_environment_and_returns_the_exit_code(
    workload: Workload,
) -> None:
    result = workload.cli.run(
        "run", "--secret", "DB_PASSWORD=/wl/db-password", "--",
        *_python("import os, sys; print(os.environ['DB_PASSWORD']); sys.exit(7)"),
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    assert result.stdout == "pw-1\n"


def test_run_folder_names_variables_after_the_items(workload: Workload) -> None:
    shown = "import os, json; print(json.dumps({k: os.environ.get(k) for k in " \
        "('DB_PASSWORD', 'API_KEY', 'CONFIG', 'SECRET')}))"  # fmt: skip
    result = workload.cli.run(
        "run", "--folder", "/wl", "--secret", "CONFIG=/wl/api.key", "--", *_python(shown)
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    # --secret wins over --folder; a name outside the grant is not there.
    assert seen == {"DB_PASSWORD": "pw-1", "API_KEY": "key-1", "CONFIG": "key-1", "SECRET": None}


def test_run_refuses_a_secret_outside_the_grant_and_runs_nothing(
    workload: Workload, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    result = workload.cli.run(
        "run", "--secret", "X=/other/secret", "--",
        *_python(f"open({str(marker)!r}, 'w').close()"),
    )  # fmt: skip
    assert result.returncode == 1
    assert "403" in result.stderr
    assert not marker.exists()


def test_run_refuses_variables_that_change_what_runs(workload: Workload) -> None:
    result = workload.cli.run("run", "--secret", "PATH=/wl/db-password", "--", "true")
    assert result.returncode == 2
    assert "PATH" in result.stderr


def test_run_reports_a_missing_command_as_a_shell_does(workload: Workload) -> None:
    result = workload.cli.run("run", "--secret", "A=/wl/db-password", "--", "no-such-command-x")
    assert result.returncode == 127
    assert "command not found: no-such-command-x" in result.stderr


def test_run_errors_are_json_with_json(workload: Workload) -> None:
    result = workload.cli.run("run", "--json", "--secret", "X=/other/secret", "--", "true")
    assert result.returncode == 1
    assert json.loads(result.stderr)["error"] == "Forbidden"


# -- agent ---------------------------------------------------------------------------------


class AgentProcess:
    """``strongroom agent`` as a background process; its stderr is collected."""

    def __init__(self, cli: Cli, config: Path) -> None:
        self.log = config.with_suffix(".log")
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [STRONGROOM, "agent", "--config", str(config)],
            env=clean_environ({"STRONGROOM_HOME": str(cli.home), **cli.env}),
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        finally:
            self._log_file.close()
        return code


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def agent_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(config, rendered file, reload marker) for one agent."""
    out = tmp_path / "out"
    return tmp_path / "agent.toml", out / "app.env", out / "reloads"


def _write_config(config: Path, destination: Path, marker: Path, **extra: object) -> None:
    reload = f"import sys; open({str(marker)!r}, 'a').write('x')"
    lines = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    lines += [
        "",
        "[[template]]",
        f"destination = {json.dumps(str(destination))}",
        'contents = """DB_PASSWORD={{ secret("/wl/db-password") }}',
        "USER={{ secret_json('/wl/config').user }}",
        '"""',
        f"command = {json.dumps([sys.executable, '-c', reload])}",
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_agent_once_renders_with_mode_0600(
    workload: Workload, agent_files: tuple[Path, Path, Path]
) -> None:
    config, destination, marker = agent_files
    _write_config(config, destination, marker)
    result = workload.cli.run("agent", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert destination.read_text() == "DB_PASSWORD=pw-1\nUSER=app\n"
    assert destination.stat().st_mode & 0o777 == 0o600
    assert marker.read_text() == "x"
    assert "pw-1" not in result.stderr  # values never reach the log


def test_agent_rerenders_on_a_new_version_and_rides_out_an_outage(
    workload: Workload, agent_files: tuple[Path, Path, Path]
) -> None:
    config, destination, marker = agent_files
    workload.write_secret("/wl/db-password", "pw-1")
    _write_config(config, destination, marker, interval=1, max_backoff=2)
    agent = AgentProcess(workload.cli, config)
    try:
        wait_for(lambda: destination.exists(), "the first render")
        assert destination.read_text().startswith("DB_PASSWORD=pw-1\n")
        version = workload.write_secret("/wl/db-password", "pw-2")
        wait_for(lambda: "pw-2" in destination.read_text(), "the re-render")
        wait_for(lambda: marker.read_text() == "xx", "the reload command after the change")
        assert f"v{version}" in agent.text()

        # The server goes away: the agent keeps the file and retries with backoff …
        workload.server.process.stop()
        wait_for(lambda: "retrying in" in agent.text(), "the agent to notice the outage")
        assert destination.read_text().startswith("DB_PASSWORD=pw-2\n")
        assert agent.process.poll() is None
        # … and catches up once the server is back.
        workload.server.process.start()
        workload.write_secret("/wl/db-password", "pw-3")
        wait_for(lambda: "pw-3" in destination.read_text(), "the render after the outage")
    finally:
        code = agent.stop()
    assert code == 0
    assert "pw-" not in agent.text()


def test_agent_logs_in_again_before_the_token_expires(
    workload: Workload, agent_files: tuple[Path, Path, Path]
) -> None:
    """jwt_ttl is 2 minutes; with renew_before 115 s the agent logs in again within ~5 s."""
    config, destination, marker = agent_files
    _write_config(config, destination, marker, interval=30, renew_before=115)
    cache = workload.cli.home / ".tmp_creds" / f"default-{workload.access_id}"
    agent = AgentProcess(workload.cli, config)
    try:
        wait_for(lambda: destination.exists() and cache.exists(), "the first render")
        first = json.loads(cache.read_text())["token"]
        wait_for(
            lambda: json.loads(cache.read_text())["token"] != first,
            "a fresh token before the old one expires",
            timeout=40,
        )
        assert "logged in again" in agent.text()
    finally:
        assert agent.stop() == 0


def test_agent_config_errors_name_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[[template]]\ndestination = "/tmp/x"\n', encoding="utf-8")
    result = Cli(tmp_path / "home").run("agent", "--config", str(config))
    assert result.returncode == 1
    assert "give exactly one of contents or source" in result.stderr
