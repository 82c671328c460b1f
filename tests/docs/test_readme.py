"""The README as a newcomer uses it: its settings table is complete, and its HTTP API examples
(curl for the operator and the instance, a workload login in Python) run as written against a
real server, with moto's STS (signatures checked) standing in for sts.amazonaws.com through
``STRONGROOM_STS_CONNECT_TO``."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.config import Settings
from tests.cli.conftest import clean_environ
from tests.e2e.server_process import STRONGROOM, ServerProcess
from tests.support.moto_sts import MotoPrincipal, MotoServer

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"<!-- readme-test: (?P<name>[\w-]+) -->\n```\w+\n(?P<code>.*?)\n```", re.S)


def readme_blocks() -> dict[str, str]:
    return {match["name"]: match["code"] for match in _BLOCK.finditer(README.read_text())}


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        f"STRONGROOM_{name.upper()}"
        for name in Settings.model_fields
        if f"STRONGROOM_{name.upper()}" not in text
    ]
    assert not missing, f"README.md does not mention {missing}"


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    assert lines[0] == "```sh"
    assert lines[1].startswith("make run ")
    assert lines[2].startswith("make test ")
    assert lines[3] == "```"


@dataclass
class World:
    server: ServerProcess
    admin: dict[str, str]
    app: MotoPrincipal


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("readme")
    with MotoServer() as moto:
        role = moto.create_role("app-role")
        moto.enable_signature_checks()
        app = moto.assume_role(role, "i-0123456789abcdef0")
        server = ServerProcess(
            {
                "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'strongroom.db'}",
                "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                # The README's requests are signed for sts.amazonaws.com; replay them to moto.
                "STRONGROOM_STS_CONNECT_TO": f"sts.amazonaws.com={moto.url}",
            },
            cwd=root,
        )
        admin = server.bootstrap()
        server.start()
        try:
            yield World(server, admin, app)
        finally:
            server.stop()


def _run(language: str, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable]
    return subprocess.run(
        command,
        input=code if language == "python" else None,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_http_api_examples_run_as_written(world: World, tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert set(blocks) == {"operator", "instance", "python"}
    base = {
        "STRONGROOM": world.server.url,
        "STRONGROOM_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(STRONGROOM).parent}{os.pathsep}{os.environ['PATH']}",
    }
    operator = _run(
        "sh",
        blocks["operator"],
        clean_environ(
            base
            | {
                "ADMIN_ACCESS_ID": world.admin["access_id"],
                "ADMIN_ACCESS_KEY": world.admin["access_key"],
            }
        ),
    )
    assert operator.returncode == 0, operator.stdout + operator.stderr
    access_id = operator.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"p-[a-z0-9]{12}", access_id), operator.stdout

    instance_env = clean_environ(base | {"ACCESS_ID": access_id, **world.app.credentials.environ()})
    instance = _run("sh", blocks["instance"], instance_env)
    assert instance.returncode == 0, instance.stdout + instance.stderr
    assert instance.stdout == "s3cr3t\n"

    python = _run("python", blocks["python"], instance_env)
    assert python.returncode == 0, python.stdout + python.stderr
    assert python.stdout == "s3cr3t\n"
