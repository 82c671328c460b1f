"""The STS client's asyncio network backend (sts_network.py) against real local servers:
TLS is verified exactly as httpx verifies it, kept-alive connections are reused, a pooled
connection the server closed is replaced without the request failing, and
STRONGROOM_STS_CONNECT_TO's TLS checks the connect-to URL's host."""

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

from strongroom.auth.aws_iam import GLOBAL_STS_ENDPOINT, VettedStsRequest, parse_connect_to
from strongroom.auth.aws_iam.sts_client import STS_LIMITS, StsClient, create_sts_http_client
from strongroom.auth.aws_iam.sts_network import AsyncioBackend, create_sts_transport
from strongroom.errors import UpstreamUnavailableError

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
    heads: list[bytes] = field(default_factory=list)
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
                self.heads.append(head)
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


def _vetted_for_global_sts() -> VettedStsRequest:
    now = datetime.now(UTC)
    return VettedStsRequest(
        endpoint=GLOBAL_STS_ENDPOINT,
        path="/",
        body=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers=(("Host", "sts.amazonaws.com"), ("X-Amz-Date", now.strftime("%Y%m%dT%H%M%SZ"))),
        signature="0" * 64,
        amz_date=now,
        region="us-east-1",
        access_key_id="AKIAEXAMPLEEXAMPLE00",
        usable_until=now + timedelta(minutes=15),
    )


async def test_connect_to_over_tls_checks_the_url_host_and_keeps_the_signed_host(
    tmp_path: Path,
) -> None:
    """An STS VPC endpoint without private DNS: the replay of a request signed for
    sts.amazonaws.com connects to the endpoint's own name (TLS server name and certificate
    check for that name, the one the operator chose to trust), with Host unchanged."""
    pki = make_pki(tmp_path, server_names=["localhost"])
    server_names: list[str | None] = []
    pki.server_context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    tiny = await TinyServer(tls=pki.server_context).start()
    connect_to = parse_connect_to([f"sts.amazonaws.com=https://localhost:{tiny.port}"])
    try:
        async with client(pki.client_context()) as http:
            sts = StsClient(http, timeout=2.0, connect_to=connect_to)
            # TinyServer's answer is no identity: what matters is what reached it.
            with pytest.raises(UpstreamUnavailableError):
                await sts.get_caller_identity(_vetted_for_global_sts())
    finally:
        await tiny.stop()
    assert server_names == ["localhost"]
    assert tiny.requests == 1
    assert b"\r\nHost: sts.amazonaws.com\r\n" in tiny.heads[0]


async def test_connect_to_over_tls_refuses_a_certificate_only_for_the_signed_host(
    tmp_path: Path,
) -> None:
    """A certificate for sts.amazonaws.com at the connect-to address is not enough: whoever
    answers there must prove the name the operator configured (a hijacked address could
    otherwise present any certificate for the signed host and read the signed request)."""
    pki = make_pki(tmp_path, server_names=["sts.amazonaws.com"])
    tiny = await TinyServer(tls=pki.server_context).start()
    connect_to = parse_connect_to([f"sts.amazonaws.com=https://localhost:{tiny.port}"])
    try:
        async with client(pki.client_context()) as http:
            sts = StsClient(http, timeout=2.0, retry_delay=0, connect_to=connect_to)
            with pytest.raises(UpstreamUnavailableError) as raised:
                await sts.get_caller_identity(_vetted_for_global_sts())
    finally:
        await tiny.stop()
    assert tiny.requests == 0
    assert f"connecting to https://localhost:{tiny.port}" in raised.value.reason


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_unix_socket("/tmp/x.sock")


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: the server runs on uvloop, whose TLS and sockets are its own."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}
