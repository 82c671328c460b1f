"""Fixtures for the console's browser tests: a real server process, moto as AWS STS, and
Playwright driving Debian's Chromium (never a downloaded browser).

One server (SQLite) and one moto serve the whole module; each signed-in user gets its own
browser profile, so sessions never mix. Set ``STRONGROOM_SCREENSHOT_DIR`` to a folder to
save desktop and narrow screenshots of the pages the tests visit (``docs/screenshots``).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess
from tests.support.login import key_token
from tests.support.moto_sts import MotoPrincipal, MotoServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


APP_ROLE = "app-role"
APP_SESSION = "i-0abc1234567890def"


@dataclass(frozen=True)
class Console:
    """The running server, its bootstrap admin, and moto's principal for AWS logins."""

    url: str
    admin_access_id: str
    admin_access_key: str
    sts_url: str
    principal: MotoPrincipal

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15)

    def admin_headers(self, http: httpx.Client) -> dict[str, str]:
        token = key_token(http, self.admin_access_id, self.admin_access_key)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[MotoServer, MotoPrincipal]]:
    with MotoServer() as server:
        role_arn = server.create_role(APP_ROLE)
        server.enable_signature_checks()
        yield server, server.assume_role(role_arn, APP_SESSION)


@pytest.fixture(scope="module")
def console(
    moto: tuple[MotoServer, MotoPrincipal], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    moto_server, principal = moto
    workdir = tmp_path_factory.mktemp("console")
    process = ServerProcess(
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{workdir / 'strongroom.db'}",
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_STS_EXTRA_ENDPOINTS": moto_server.url,
            "STRONGROOM_LOG_FORMAT": "json",
        },
        cwd=workdir,
    )
    admin = process.bootstrap()
    process.start()
    try:
        yield Console(
            url=process.url,
            admin_access_id=admin["access_id"],
            admin_access_key=admin["access_key"],
            sts_url=moto_server.url,
            principal=principal,
        )
    finally:
        log = process.stop()
        assert admin["access_key"] not in log


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} is missing: the console's browser tests need Debian's Chromium "
            "(apt-get install -y chromium)"
        )
        # CI requires them (.ci/run sets this); a developer's machine may skip them.
        if os.environ.get("STRONGROOM_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def new_browser(
    playwright: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Any]]:
    """Opens a fresh Chromium profile (a BrowserContext) per call; all closed afterwards."""
    contexts: list[Any] = []

    def open_profile() -> Any:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield open_profile
    for context in contexts:
        context.close()


@pytest.fixture
def shoot() -> Callable[[Any, str], None]:
    """``shoot(page, name)`` saves name-desktop.png and name-narrow.png when asked to."""
    folder = os.environ.get("STRONGROOM_SCREENSHOT_DIR")

    def save(page: Any, name: str) -> None:
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}-desktop.png"), full_page=True)
        page.set_viewport_size(NARROW)
        page.screenshot(path=str(Path(folder) / f"{name}-narrow.png"), full_page=True)
        page.set_viewport_size(DESKTOP)

    return save
