"""The migrations in the checkout's top-level ``alembic/`` folder, run the two ways SPEC §1 names:
``alembic upgrade head`` from a checkout, and ``strongroom db upgrade`` from an installed wheel,
each on a fresh SQLite file and a fresh, empty PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.db import migrate
from strongroom.db.engine import Database
from tests.support.databases import new_postgres_database, postgres_url

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (the shared fixture's copies are migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with new_postgres_database("strongroom_empty") as name:
        yield postgres_url(name)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the package installed from a wheel built from this checkout.

    The dependencies come from the test run's own environment (a path line after the venv's
    site-packages, so the wheel's ``strongroom`` comes first): installing them again would
    only test PyPI.
    """
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(root / "dist"), str(CHECKOUT)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("strongroom-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    # A console script as pip writes it for an installed package.
    script = venv / "bin" / "strongroom"
    script.write_text(
        f"#!{python}\nimport sys\nfrom strongroom.cli.main import run\nsys.exit(run())\n"
    )
    script.chmod(0o755)
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.run(
        [python, "-c", "import strongroom; print(strongroom.__file__)"],
        check=True, capture_output=True, text=True, cwd=root,
    ).stdout  # fmt: skip
    assert where.startswith(site), f"strongroom imported from {where}, not from the wheel"
    return venv


def _revision(database_url: str) -> str | None:
    database = Database.from_url(database_url)
    try:
        return migrate.current_revision(database)
    finally:
        database.dispose()


def test_db_upgrade_from_an_installed_wheel(installed_wheel: Path, empty_database_url: str) -> None:
    result = subprocess.run(
        [installed_wheel / "bin" / "strongroom", "db", "upgrade"],
        env={**_CLEAN_ENV, "STRONGROOM_DATABASE_URL": empty_database_url},
        cwd=installed_wheel,  # away from the checkout, whose alembic/ it must not need
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = migrate.head_revision()
    assert head is not None
    assert f"Database at revision {head}" in result.stdout
    assert _revision(empty_database_url) == head


def test_alembic_upgrade_head_from_the_checkout(empty_database_url: str) -> None:
    alembic = Path(sys.executable).parent / "alembic"
    result = subprocess.run(
        [alembic, "upgrade", "head"],
        env={**_CLEAN_ENV, "STRONGROOM_DATABASE_URL": empty_database_url},
        cwd=CHECKOUT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert _revision(empty_database_url) == migrate.head_revision()
    # And the server's own path agrees that nothing is left to do.
    database = Database.from_url(empty_database_url)
    try:
        assert migrate.is_up_to_date(database)
    finally:
        database.dispose()
