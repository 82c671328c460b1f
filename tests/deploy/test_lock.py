"""requirements/server.lock against pyproject.toml: every requirement the server declares (the
plain install and the ``server`` extra) is pinned in the lock, at a version the requirement
allows.

The image installs the lock alone (``--no-deps``) and its build fails on a stale lock
(``pip check`` in the Dockerfile), minutes in; this says the same in the fast suite, for a
requirement added or bounded without ``make lock``. Extras (``uvicorn[standard]``) are left to
``pip check``: what they bring is known only from the packages' metadata.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked_versions(lock: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def test_the_server_lock_pins_every_requirement_at_an_allowed_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The plain install (the client) and the server extra: the image is the server.
    declared = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    pins = locked_versions(ROOT / "requirements" / "server.lock")
    assert pins, "no pins read from requirements/server.lock"
    for text in declared:
        requirement = Requirement(text)
        # The image: Linux, CPython 3.11 (the lock is --universal; this is the case that ships).
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"python_version": "3.11", "sys_platform": "linux"}
        ):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"pyproject.toml requires {text!r}, which requirements/server.lock does not pin: "
            "run `make lock`"
        )
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/server.lock pins {name}=={pins[name]}, outside pyproject.toml's "
            f"{text!r}: run `make lock`"
        )
