"""Native TLS end to end (SPEC sections 1 and 11): a real ``strongroom server`` over HTTPS with a
certificate made here, reads and logins (moto's STS) through it, ``strongroom healthcheck``
under TLS, and the console cookie's ``Secure`` flag over TLS, over plain HTTP, and with
``X-Forwarded-Proto`` from a trusted and from an untrusted peer.

Two servers for the module: one over HTTPS, one over plain HTTP that trusts 127.0.0.1 as a
proxy (a peer at 127.0.0.2, also loopback, is then a client that is no proxy).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server_process import STRONGROOM
from tests.e2e.test_login_processes import Server, children
from tests.support.login import key_token
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity
from tests.support.tls import CertificateFiles, self_signed

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class HttpsServer(Server):
    """``strongroom server`` over HTTPS; ``verify`` is the certificate clients trust."""

    def __init__(
        self, env: Mapping[str, str], *, workers: int, cwd: Path, verify: Path | None
    ) -> None:
        super().__init__(env, workers=workers, cwd=cwd)
        self.verify: Path | bool = verify or True
        if verify is not None:
            self.url = f"https://127.0.0.1:{self.port}"

    def answers_ready(self) -> bool:
        ready = httpx.get(self.url + "/v1/sys/ready", timeout=1, verify=self.client_tls())
        return ready.status_code == 200

    def client_tls(self) -> ssl.SSLContext | bool:
        if isinstance(self.verify, Path):
            return ssl.create_default_context(cafile=str(self.verify))
        return True

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15, verify=self.client_tls(), **kwargs)


@dataclass
class World:
    tls: HttpsServer
    plain: HttpsServer
    certificate: CertificateFiles
    admin: dict[str, str]  # access_id, access_key; plain_access_id, plain_access_key


def _start(
    root: Path, env: dict[str, str], name: str, verify: Path | None, workers: int
) -> HttpsServer:
    folder = root / name
    folder.mkdir()
    return HttpsServer(env, workers=workers, cwd=folder, verify=verify)


@pytest.fixture(scope="module")
def world(moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tls")
    certificate = self_signed(root / "certs")
    base = {
        "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
        "STRONGROOM_LOG_FORMAT": "json",
    }
    tls_env = {
        **base,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'tls.db'}",
        "STRONGROOM_TLS_CERT_FILE": str(certificate.cert),
        "STRONGROOM_TLS_KEY_FILE": str(certificate.key),
    }
    plain_env = {
        **base,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{root / 'plain.db'}",
        "STRONGROOM_TRUSTED_PROXIES": "127.0.0.1/32",
        "STRONGROOM_LOGIN_PROCESSES": "0",
    }
    tls = _start(root, tls_env, "tls", certificate.cert, workers=2)
    plain = _start(root, plain_env, "plain", None, workers=1)
    admin = tls.bootstrap()
    plain_admin = plain.bootstrap()
    try:
        tls.start()
        plain.start()
        plain_keys = {"plain_" + name: value for name, value in plain_admin.items()}
        yield World(tls, plain, certificate, {**admin, **plain_keys})
    finally:
        for server in (tls, plain):
            log = server.stop()
            assert not server.kill_leftovers()
            assert "Traceback" not in log, log


def test_reads_and_logins_over_https(world: World, moto: MotoWorld) -> None:
    server = world.tls
    with server.client() as admin:
        token = key_token(admin, world.admin["access_id"], world.admin["access_key"])
        admin.headers["Authorization"] = f"Bearer {token}"

        def call(method: str, path: str, **kwargs: Any) -> Any:
            response = admin.request(method, path, **kwargs)
            assert response.status_code < 400, response.text
            return response.json() if response.content else None

        method = call(
            "POST",
            "/v1/auth-methods",
            json={
                "type": "aws_iam",
                "name": "iamTls",
                "bound_aws_account_id": ["123456789012"],
                "bound_role_name": ["app-role"],
                "sts_url": moto.server.url,
            },
        )
        call("POST", "/v1/roles", json={"name": "tlsApps"})
        call("PUT", "/v1/roles/tlsApps/rules", json={"path": "/tls/*", "capabilities": ["read"]})
        call("POST", "/v1/roles/tlsApps/associations", json={"auth_method": "iamTls"})
        call("POST", "/v1/secrets", json={"name": "/tls/db", "value": "over TLS"})

    # An AWS IAM login over HTTPS (moto checks the signature), then a read with its token.
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    with server.client() as workload:
        login = workload.post(
            "/v1/auth/login",
            json={
                "access_id": method["access_id"],
                "access_type": "aws_iam",
                "cloud_id": signed["cloud_id"],
            },
        )
        assert login.status_code == 200, login.text
        assert login.json()["roles"] == ["tlsApps"]
        read = workload.get(
            "/v1/secrets/tls/db", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert read.status_code == 200, read.text
        assert read.json()["value"] == "over TLS"

    # Fresh connections logging in side by side, each on a TLS connection of its own: the
    # workers serve them (a TLS session cannot be passed to a login process).
    def fresh_login(_: int) -> int:
        with server.client() as client:
            return len(key_token(client, world.admin["access_id"], world.admin["access_key"]))

    with ThreadPoolExecutor(8) as pool:
        assert all(length > 40 for length in pool.map(fresh_login, range(16)))
    supervisor_children = children(server.pid)
    assert len(supervisor_children) == 2  # the two workers, and no login process
    with server.client() as client:
        metrics = client.get("/metrics").text
    kinds = {
        (sample.labels["kind"], sample.labels["index"])
        for family in text_string_to_metric_families(metrics)
        if family.name == "strongroom_process_resident_memory_bytes"
        for sample in family.samples
    }
    assert kinds == {("supervisor", "0"), ("worker", "0"), ("worker", "1")}

    # The port speaks TLS only: a plain HTTP request gets no HTTP answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/v1/sys/health", timeout=3)

    started = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and '"server_listening"' in line
    ]
    assert started[-1]["url"] == f"https://127.0.0.1:{server.port}"
    assert started[-1]["login_processes"] == 0


def test_a_client_that_never_finishes_its_handshake_is_disconnected(world: World) -> None:
    """Slowloris on the handshake: the head's 10 s bound holds for it too (the event loop's
    own default would keep the connection 60 s)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", world.tls.port), timeout=30) as silent:
        silent.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        assert silent.recv(1024) == b""  # closed by the server
    elapsed = time.monotonic() - started
    assert 9 < elapsed < 20, elapsed


def test_healthcheck_follows_tls(world: World) -> None:
    server = world.tls

    def healthcheck(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRONGROOM, "healthcheck", "--timeout", "3"],
            env={**env, "STRONGROOM_PORT": str(server.port)},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    ok = healthcheck(server.env)
    assert ok.returncode == 0, ok.stderr
    # Asked over plain HTTP, the TLS port gives no HTTP answer.
    plain = healthcheck({k: v for k, v in server.env.items() if "_TLS_" not in k})
    assert plain.returncode == 1
    assert "error:" in plain.stderr


def sign_in_cookies(client: httpx.Client, access_id: str, access_key: str) -> dict[str, str]:
    """Sign in to the console; {cookie name: its Set-Cookie header} of the form and the
    sign-in's answers."""
    form = client.get("/ui/login")
    assert form.status_code == 200, form.text
    found = {h.split("=", 1)[0]: h for h in form.headers.get_list("set-cookie")}
    match = CSRF.search(form.text)
    assert match is not None
    # Sent back by hand: a cookie jar holds a Secure cookie back from plain HTTP, but a browser
    # talking HTTPS to the proxy in front would send it.
    nonce = found["strongroom_login"].split(";", 1)[0]
    client.cookies.clear()
    answer = client.post(
        "/ui/login",
        data={"csrf": match.group(1), "access_id": access_id, "access_key": access_key},
        headers={"Cookie": nonce},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    for header in answer.headers.get_list("set-cookie"):
        found[header.split("=", 1)[0]] = header
    assert set(found) == {"strongroom_login", "strongroom_session"}
    return found


def flags(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


def test_the_console_cookie_is_secure_over_tls(world: World) -> None:
    with world.tls.client() as client:
        cookies = sign_in_cookies(client, world.admin["access_id"], world.admin["access_key"])
    for header in cookies.values():
        assert {"secure", "httponly", "samesite=strict"} <= flags(header)


def test_the_console_cookie_is_not_secure_over_plain_http(world: World) -> None:
    with world.plain.client() as client:
        cookies = sign_in_cookies(
            client, world.admin["plain_access_id"], world.admin["plain_access_key"]
        )
    for header in cookies.values():
        assert "secure" not in flags(header)
        assert {"httponly", "samesite=strict"} <= flags(header)


def test_forwarded_proto_https_from_a_trusted_proxy_makes_it_secure(world: World) -> None:
    # The peer is 127.0.0.1, in TRUSTED_PROXIES: a proxy that ended TLS says so.
    with world.plain.client(headers={"X-Forwarded-Proto": "https"}) as client:
        cookies = sign_in_cookies(
            client, world.admin["plain_access_id"], world.admin["plain_access_key"]
        )
    for header in cookies.values():
        assert "secure" in flags(header)


def test_forwarded_proto_from_a_peer_that_is_no_proxy_is_ignored(world: World) -> None:
    # From 127.0.0.2, not in TRUSTED_PROXIES: a client's claim about its own connection.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with world.plain.client(headers={"X-Forwarded-Proto": "https"}, transport=transport) as client:
        cookies = sign_in_cookies(
            client, world.admin["plain_access_id"], world.admin["plain_access_key"]
        )
    for header in cookies.values():
        assert "secure" not in flags(header)
    # The server did see that peer (the audit trail records where the sign-in came from).
    with world.plain.client() as admin:
        token = key_token(admin, world.admin["plain_access_id"], world.admin["plain_access_key"])
        events = admin.get(
            "/v1/audit", params={"limit": 50}, headers={"Authorization": f"Bearer {token}"}
        ).json()["events"]
    assert any(e["source_ip"] == "127.0.0.2" for e in events)


def test_a_key_that_does_not_match_stops_the_server_with_one_line(
    world: World, tmp_path: Path
) -> None:
    other = self_signed(tmp_path, "other")
    env = {
        **world.tls.env,
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STRONGROOM_TLS_KEY_FILE": str(other.key),
    }
    result = subprocess.run(
        [STRONGROOM, "server", "--port", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: the TLS key file {other.key} does not match the certificate in "
        f"{world.certificate.cert}"
    ]
    alone = subprocess.run(
        [STRONGROOM, "server", "--port", "1"],
        env={**env, "STRONGROOM_TLS_KEY_FILE": ""},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert alone.returncode == 1
    assert "go together" in alone.stderr
    assert len(alone.stderr.splitlines()) == 1
