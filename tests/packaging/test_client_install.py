"""The plain install is the client side (SPEC section 1): a wheel installed without extras
gives the CLI, login signing, ``run`` and ``agent``, and none of the server stack."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "cryptography")


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-install")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root, ROOT)
    assert built.returncode == 0, built.stderr
    wheel = next(root.glob("strongroom-*.whl"))
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    installed = _run(python, "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr
    return root / "venv"


def test_the_client_install_has_no_server_stack(client_venv: Path) -> None:
    listed = _run(client_venv / "bin" / "python", "-m", "pip", "list", "--format", "freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert not names & set(SERVER_PACKAGES), names & set(SERVER_PACKAGES)
    assert {"strongroom", "botocore", "httpx", "typer"} <= names


def test_the_client_commands_work_without_the_server_stack(
    client_venv: Path, tmp_path: Path
) -> None:
    strongroom = client_venv / "bin" / "strongroom"
    env = {"PATH": "/usr/bin:/bin", "STRONGROOM_HOME": str(tmp_path), "HOME": str(tmp_path)}
    assert _run(strongroom, "--version", env=env).returncode == 0
    configured = _run(
        strongroom, "configure", "--access-id", "p-abcdefabcdef", "--access-type", "aws_iam",
        env=env,
    )  # fmt: skip
    assert configured.stdout == "Profile default successfully configured\n", configured.stderr
    signed = _run(
        strongroom, "get-cloud-identity",
        env=env | {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                   "AWS_EC2_METADATA_DISABLED": "true"},
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert len(signed.stdout.strip()) > 500  # a base64 cloud_id
    for command in ("run", "agent", "get-secret-value"):
        assert _run(strongroom, command, "--help", env=env).returncode == 0, command


def test_a_server_command_says_what_to_install(client_venv: Path, tmp_path: Path) -> None:
    result = _run(client_venv / "bin" / "strongroom", "server", env={"HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "pip install 'strongroom[server]'" in result.stderr
    assert "Traceback" not in result.stderr
