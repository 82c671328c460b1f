"""``strongroom server`` processes for the benches, set up as a user would, through the CLI and
the REST API: environment, ``strongroom bootstrap --json``, the server, a NON-admin reader.

The reader: an ``api_key`` auth method ``bench-reader``, a role of the same name with ``read``
on ``/bench/*`` associated with it, the secret ``/bench/db-password``, and a token from a
login through that auth method. :func:`check_read` checks a server with it: 200 and the right
value, and 403 outside the grant, so that no bench measures an open door.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from processes import LOOPBACK, Processes, wait_until_ready

VENV_BIN = Path(sys.executable).parent
STRONGROOM = str(VENV_BIN / "strongroom") if (VENV_BIN / "strongroom").exists() else "strongroom"
SECRET_NAME = "/bench/db-password"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without configuration that could point a server elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRONGROOM_", "BAO_", "VAULT_", "PROMETHEUS_MULTIPROC_DIR"))
    }
    env.update(extra)
    return env


def effective_workers(workers: int) -> int:
    return workers or os.cpu_count() or 1


def server_env(
    database_url: str,
    directory: Path,
    workers: int,
    *,
    master_key: str | None = None,
    audit_file: Path | None = None,
) -> dict[str, str]:
    """The environment of a server (and of its bootstrap) on ``database_url``.

    Replicas of one database must share ``master_key``; None makes a new one.
    """
    env = clean_env(
        STRONGROOM_DATABASE_URL=database_url,
        STRONGROOM_MASTER_KEY=master_key or new_master_key(),
        STRONGROOM_LOG_FORMAT="json",
    )
    if audit_file is not None:
        env["STRONGROOM_AUDIT_FILE"] = str(audit_file)
    if effective_workers(workers) > 1:
        # The server makes this directory itself when it runs several workers (and leaves it
        # behind); pointing it into our temp dir changes nothing but the clean-up.
        metrics = directory / "metrics"
        metrics.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return env


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def run_cli(
    env: dict[str, str], directory: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``strongroom <args>`` in ``directory``; its output captured, its exit status not checked."""
    return subprocess.run(
        [STRONGROOM, *args],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bootstrap(env: dict[str, str], directory: Path) -> dict[str, str]:
    """``strongroom bootstrap --json`` (migrates the database): the admin's access id and key."""
    boot = run_cli(env, directory, "bootstrap", "--json")
    if boot.returncode != 0:
        raise RuntimeError(f"strongroom bootstrap failed:\n{boot.stderr}")
    return dict(json.loads(boot.stdout))


def start_server(
    procs: Processes,
    env: dict[str, str],
    directory: Path,
    port: int,
    workers: int,
    *,
    log_name: str = "server.log",
) -> tuple[subprocess.Popen[Any], list[str]]:
    """Start ``strongroom server`` on ``port`` and wait until ``/v1/sys/ready`` says 200."""
    cmd = [STRONGROOM, "server", "--host", LOOPBACK, "--port", str(port)]
    if workers:
        cmd += ["--workers", str(workers)]
    log_path = directory / log_name
    with log_path.open("wb") as log_handle:
        process = procs.spawn(
            cmd, env=env, cwd=directory, stdout=log_handle, stderr=subprocess.STDOUT
        )
    try:
        wait_until_ready(process, f"http://{LOOPBACK}:{port}/v1/sys/ready", log_path)
    except BaseException:
        procs.stop(process)
        raise
    return process, cmd


def reader_token(base: str, admin: dict[str, str], value: str) -> str:
    """Admin login → api_key auth method, role, rule, association, secret → reader login."""
    with httpx.Client(base_url=base, timeout=30) as http:

        def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
            response = http.request(method, path, **kwargs)
            if response.status_code != expect:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            return response.json() if response.content else None

        login = call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": admin["access_id"],
                "access_type": "access_key",
                "access_key": admin["access_key"],
            },
        )
        auth = {"Authorization": f"Bearer {login['token']}"}
        method = call(
            "POST",
            "/v1/auth-methods",
            201,
            json={"type": "api_key", "name": "bench-reader", "jwt_ttl": 720},
            headers=auth,
        )
        call("POST", "/v1/roles", 201, json={"name": "bench-reader"}, headers=auth)
        call(
            "PUT",
            "/v1/roles/bench-reader/rules",
            200,
            json={"rule_type": "item-rule", "path": "/bench/*", "capabilities": ["read"]},
            headers=auth,
        )
        call(
            "POST",
            "/v1/roles/bench-reader/associations",
            201,
            json={"auth_method": "bench-reader"},
            headers=auth,
        )
        call("POST", "/v1/secrets", 201, json={"name": SECRET_NAME, "value": value}, headers=auth)
        reader = call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": method["access_id"],
                "access_type": "access_key",
                "access_key": method["access_key"],
            },
        )
        if reader.get("roles") != ["bench-reader"]:
            raise RuntimeError(f"reader token has roles {reader.get('roles')}, not bench-reader")
        return str(reader["token"])


def check_read(base: str, token: str, value: str) -> None:
    """The reader reads its secret (200, right value) and nothing outside ``/bench/*`` (403)."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(base + "/v1/secrets" + SECRET_NAME, headers=headers, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"strongroom read at {base}: {response.status_code} {response.text}")
    body = response.json()
    if body.get("value") != value or body.get("name") != SECRET_NAME:
        raise RuntimeError(f"strongroom read at {base} returned the wrong secret: {body}")
    # A non-reader must be refused, so the benchmark is not measuring an open door.
    other = httpx.get(base + "/v1/secrets/elsewhere/x", headers=headers, timeout=10)
    if other.status_code != 403:
        raise RuntimeError(f"read outside /bench/* at {base} gave {other.status_code}, not 403")
