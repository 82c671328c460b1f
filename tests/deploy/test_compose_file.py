"""docker-compose.yml, which no engine here can start: checked against the Compose
Specification's JSON schema, and for what its services must agree on. (``make test-container``
runs its one-shot service's command and environment in the real image.)"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

CHECKOUT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = CHECKOUT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_the_file_follows_the_compose_specification() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [check, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_servers_start_after_the_one_shot_and_run_the_images_own_command(
    compose: dict[str, Any],
) -> None:
    init, server = compose["services"]["init"], compose["services"]["server"]
    assert init["command"][:2] == ["bootstrap", "--create-master-key"]
    assert init["depends_on"]["db"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    assert server["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert server["restart"] == "unless-stopped"
    assert server["deploy"]["replicas"] >= 2
    # What tests/container runs is the image's entrypoint and command: so must compose.
    assert "command" not in server
    assert "entrypoint" not in server
    assert init["image"] == server["image"]


def test_the_master_key_lives_in_the_volume_both_services_mount(compose: dict[str, Any]) -> None:
    services = compose["services"]
    key_file = Path(services["init"]["environment"]["STRONGROOM_MASTER_KEY_FILE"])
    assert services["server"]["environment"]["STRONGROOM_MASTER_KEY_FILE"] == str(key_file)
    for name, access in (("init", None), ("server", "ro")):
        mounts = [volume.split(":") for volume in services[name]["volumes"]]
        assert [m for m in mounts if m[1] == str(key_file.parent)] == [
            ["keys", str(key_file.parent), *([access] if access else [])]
        ], name
    assert "secrets" not in compose, "a file secret keeps its host owner: uid 10001 can't read it"


def test_only_the_load_balancer_is_a_trusted_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    balancer = ipaddress.ip_address(services["lb"]["networks"]["default"]["ipv4_address"])
    assert balancer in subnet
    trusted = services["server"]["environment"]["STRONGROOM_TRUSTED_PROXIES"]
    assert [ipaddress.ip_network(p.strip()) for p in trusted.split(",")] == [
        ipaddress.ip_network(balancer)
    ]
    assert "ports" not in services["server"], "clients reach the replicas through the balancer"
    assert "ports" not in services["db"]


def test_the_load_balancer_replaces_a_client_forwarded_for() -> None:
    """Source IP spoofing: the servers believe X-Forwarded-For from the balancer, so what it
    passes on must be the address the client connected from, never what the client sent.
    (HAProxy 2.6 from Debian, run in front of two servers of the image, showed it.)"""
    config = (CHECKOUT / "container" / "haproxy.cfg").read_text()
    directives = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "http-request set-header X-Forwarded-For %[src]" in directives
    assert "option forwardfor" not in directives, "adds a line after the client's own"


def test_the_load_balancer_replaces_a_client_forwarded_proto() -> None:
    """The servers believe X-Forwarded-Proto from the balancer (the console cookie's Secure
    flag): it must say how the client reached the balancer, never what the client claimed.
    (HAProxy 2.6 from Debian in front of a server echoing its headers: a client's "https"
    over plain HTTP arrives as "http".)"""
    config = (CHECKOUT / "container" / "haproxy.cfg").read_text()
    directives = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]" in directives
