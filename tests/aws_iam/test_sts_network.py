"""The STS client's asyncio network backend (sts_network.py) against real local servers:
TLS is verified exactly as httpx verifies it, kept-alive connections are reused, and a pooled
connection the server closed is replaced without the request failing."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.auth.aws_iam.sts_client import STS_LIMITS, create_sts_http_client
from strongroom.auth.aws_iam.sts_network import AsyncioBackend, create_sts_transport

pytestmark = pytest.mark.anyio

BODY = b"<GetCallerIdentityResponse/>"


@dataclass
class Pki:
    ca_pem: bytes
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(tmp_path: Path, *, server_names: list[str]) -> Pki:
    """A throwaway CA and a server certificate it signed for ``server_names``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in server_names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(server_names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    return Pki(ca.public_bytes(serialization.Encoding.PEM), server_context)


@dataclass
class TinyServer:
    """HTTP/1.1 on loopback: answers every request with BODY; keeps connections alive unless
    told to close them after each answer."""

    close_after_answer: bool = False
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> TinyServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests += 1
                connection = b"close" if self.close_after_answer else b"keep-alive"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
                    + str(len(BODY)).encode()
                    + b"\r\nConnection: "
                    + connection
                    + b"\r\n\r\n"
                    + BODY
                )
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.close()

    async def stop(self) -> None:
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    tiny = await TinyServer().start()
    yield tiny
    await tiny.stop()


def client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    return create_sts_http_client(
        2.0, transport=create_sts_transport(limits=STS_LIMITS, verify=verify)
    )


def test_the_production_client_runs_on_the_asyncio_backend() -> None:
    """Guards httpx internals: if an upgrade moved the pool, this fails rather than the
    client silently falling back to another backend or losing its settings."""
    http = create_sts_http_client(2.0)
    transport = http._transport
    pool = transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, AsyncioBackend)
    assert pool._max_connections == STS_LIMITS.max_connections
    assert pool._max_keepalive_connections == STS_LIMITS.max_keepalive_connections
    assert pool._keepalive_expiry == STS_LIMITS.keepalive_expiry


async def test_kept_alive_connections_are_reused(server: TinyServer) -> None:
    async with client() as http:
        for _ in range(3):
            response = await http.post(f"http://127.0.0.1:{server.port}/", content=b"x=1")
            assert response.content == BODY
    assert (server.connections, server.requests) == (1, 3)


async def test_a_server_that_closes_gets_a_new_connection_each_time(server: TinyServer) -> None:
    server.close_after_answer = True
    async with client() as http:
        for _ in range(3):
            assert (await http.post(f"http://127.0.0.1:{server.port}/")).content == BODY
    assert (server.connections, server.requests) == (3, 3)


async def test_an_idle_connection_closed_by_the_server_is_replaced(server: TinyServer) -> None:
    async with client() as http:
        assert (await http.post(f"http://127.0.0.1:{server.port}/")).content == BODY
        server.drop_connections()
        await asyncio.sleep(0.05)  # the FIN reaches the pooled connection
        assert (await http.post(f"http://127.0.0.1:{server.port}/")).content == BODY
    assert server.connections == 2


async def test_connection_refused_is_a_connect_error() -> None:
    from tests.support.moto_sts import free_port

    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/")


async def test_tls_is_verified_against_the_trusted_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, server_names=["localhost", "127.0.0.1"])
    tiny = await TinyServer(tls=pki.server_context).start()
    try:
        async with client(pki.client_context()) as http:
            response = await http.post(f"https://localhost:{tiny.port}/", content=b"x=1")
            assert response.content == BODY
            assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        # The default trust store (certifi, never the environment) does not know this CA:
        # a man in the middle with his own certificate cannot read signed requests.
        async with client() as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.post(f"https://localhost:{tiny.port}/")
    finally:
        await tiny.stop()


async def test_tls_checks_the_host_name(tmp_path: Path) -> None:
    # A certificate from a trusted CA, but for another host (a hijacked DNS answer).
    pki = make_pki(tmp_path, server_names=["sts.example.net"])
    tiny = await TinyServer(tls=pki.server_context).start()
    try:
        async with client(pki.client_context()) as http:
            with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                await http.post(f"https://localhost:{tiny.port}/")
    finally:
        await tiny.stop()


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_unix_socket("/tmp/x.sock")


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the server runs on uvloop, whose TLS and sockets are its own."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}
