"""What Strongroom relies on in other projects beyond their published API, checked one by one.

``serving/`` runs on uvicorn's httptools protocol and server state, and the STS client puts its
own network backend (httpcore's interface) into httpx's transport. None of that is API the
projects promise to keep, so pyproject.toml bounds uvicorn, httpx and httpcore above. When a
new release is allowed (or a lock is upgraded) and one of these tests fails, its message names
the package, the version installed and what changed: adapt the code it names, then move the
bound. The behaviour built on these internals is tested where it lives (tests/serving,
tests/aws_iam/test_sts_network.py); these tests say *which* internal moved.

One FastAPI attribute (the router's ``lifespan_context``) is checked too but not bounded: it is
public, if little documented, and FastAPI's frequent minor releases carry fixes worth having.
"""

# The timeout parameters are httpcore's stream interface, implemented by a stand-in below.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import ssl
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import httpcore
import httpx
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from strongroom.auth.aws_iam.sts_network import AsyncioBackend, AsyncioStream


def changed(package: str, what: str, used_by: str) -> str:
    """The failure message: the package, its installed version, what changed and who cares."""
    return (
        f"{package} {version(package)}: {what}. Strongroom relies on it in {used_by}. Adapt that "
        f"code to this release of {package}; only then move its upper bound in pyproject.toml."
    )


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- uvicorn: serving/protocol.py, vault_methods.py, login_process.py, worker.py --------------

SERVING = "src/strongroom/serving/"

# The methods of uvicorn's httptools protocol that serving/ overrides or calls, with their
# parameters: VaultMethodsProtocol and PassedConnectionProtocol subclass it, and
# LoginRoutingProtocol builds it and hands it a transport it already holds.
HTTPTOOLS_PROTOCOL_METHODS = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "shutdown": ["self"],
}


def test_uvicorn_httptools_protocol_keeps_the_methods_serving_builds_on() -> None:
    for name, expected in HTTPTOOLS_PROTOCOL_METHODS.items():
        method = getattr(HttpToolsProtocol, name, None)
        assert method is not None, changed(
            "uvicorn", f"HttpToolsProtocol.{name} is gone", SERVING + "vault_methods.py"
        )
        assert parameters(method) == expected, changed(
            "uvicorn",
            f"HttpToolsProtocol.{name} now takes {parameters(method)}, not {expected}",
            SERVING + "vault_methods.py, protocol.py and login_process.py",
        )


def test_uvicorn_server_state_keeps_connections_tasks_and_default_headers() -> None:
    state = ServerState()
    for name, kind in (("connections", set), ("tasks", set), ("default_headers", list)):
        assert isinstance(getattr(state, name, None), kind), changed(
            "uvicorn",
            f"ServerState.{name} is no longer a {kind.__name__}",
            SERVING + "protocol.py (connections, tasks) and login_process.py (all three)",
        )


def test_uvicorn_config_takes_a_protocol_class_and_keeps_what_serving_reads() -> None:
    config = uvicorn.Config(_lifespan_app, http=HttpToolsProtocol, lifespan="off")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol, changed(
        "uvicorn", "Config(http=<class>) no longer serves with that class", SERVING + "worker.py"
    )
    assert isinstance(config.timeout_keep_alive, int | float), changed(
        "uvicorn", "Config.timeout_keep_alive is gone", SERVING + "protocol.py"
    )
    assert isinstance(config.encoded_headers, list), changed(
        "uvicorn", "Config.encoded_headers is gone", SERVING + "login_process.py"
    )


def test_uvicorn_server_builds_and_shuts_down_protocols_as_serving_expects() -> None:
    """A real uvicorn server on a listening socket, as a worker runs it: it enters
    ``capture_signals`` (which WorkerServer overrides), builds each connection's protocol with
    the four keywords serving's protocols take (``app_state`` being the lifespan's state, where
    the app puts the login handoff), and on shutdown calls ``shutdown()`` on every protocol in
    ``server_state.connections`` (where LoginRoutingProtocol puts a connection that has not
    sent its first bytes)."""
    built: list[dict[str, Any]] = []
    shut_down: list[bool] = []
    signals_captured: list[bool] = []

    class RecordingProtocol(asyncio.Protocol):
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)
            self.state: ServerState = kwargs["server_state"]

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.state.connections.add(self)  # type: ignore[arg-type]

        def shutdown(self) -> None:
            shut_down.append(True)
            self.state.connections.discard(self)
            self.transport.close()

    class SpyServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            signals_captured.append(True)
            yield

    config = uvicorn.Config(_lifespan_app, http=RecordingProtocol, lifespan="on", log_level="error")
    server = SpyServer(config)
    listener = socket.create_server(("127.0.0.1", 0))

    async def scenario() -> None:
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        # Polled: uvicorn signals neither "started" nor "connection made" any other way.
        try:
            async with asyncio.timeout(10):
                while not server.started:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                _, writer = await asyncio.open_connection(*listener.getsockname())
                while not server.server_state.connections:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                server.should_exit = True
                await serving
                writer.close()
        finally:
            serving.cancel()

    asyncio.run(scenario())
    assert signals_captured, changed(
        "uvicorn", "Server.serve no longer enters Server.capture_signals()", SERVING + "worker.py"
    )
    assert len(built) == 1, changed(
        "uvicorn", "the server no longer builds Config(http=<class>) per connection", SERVING
    )
    assert set(built[0]) == {"config", "server_state", "app_state", "_loop"}, changed(
        "uvicorn",
        f"the server builds a connection's protocol with {sorted(built[0])}",
        SERVING + "protocol.py",
    )
    assert built[0]["config"] is config, changed(
        "uvicorn", "the protocol is not given the server's Config", SERVING + "protocol.py"
    )
    assert built[0]["server_state"] is server.server_state, changed(
        "uvicorn", "the protocol is not given Server.server_state", SERVING + "protocol.py"
    )
    assert built[0]["app_state"].get("lifespan-said") == "hello", changed(
        "uvicorn", "app_state is no longer the lifespan's state", SERVING + "protocol.py"
    )
    assert shut_down, changed(
        "uvicorn",
        "shutdown no longer calls shutdown() on each protocol in server_state.connections",
        SERVING + "protocol.py",
    )


async def _lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app whose lifespan puts a value in its state (as create_app puts the handoff)."""
    if scope["type"] != "lifespan":
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["lifespan-said"] = "hello"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def test_fastapi_router_runs_the_lifespan_as_a_context_manager_yielding_its_state() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        yield {"handoff": "here"}

    app = FastAPI(lifespan=lifespan)

    async def enter() -> Any:
        async with app.router.lifespan_context(app) as state:
            return state

    assert asyncio.run(enter()) == {"handoff": "here"}, changed(
        "fastapi",
        "app.router.lifespan_context(app) no longer yields the lifespan's state",
        SERVING + "login_process.py (a login process enters the app's lifespan itself)",
    )


# -- httpx and httpcore: auth/aws_iam/sts_network.py ------------------------------------------

STS_NETWORK = "src/strongroom/auth/aws_iam/sts_network.py"


def test_httpx_transport_sends_through_its_pool_attribute() -> None:
    """create_sts_transport replaces ``AsyncHTTPTransport._pool`` (httpx takes no network
    backend): the transport must keep its pool there and send every request through it."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    assert isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool), changed(
        "httpx", "AsyncHTTPTransport no longer keeps an httpcore pool in _pool", STS_NETWORK
    )
    sent: list[httpcore.Request] = []

    class Pool:
        async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
            sent.append(request)
            return httpcore.Response(200, content=b"through the pool")

    transport._pool = Pool()  # type: ignore[assignment]

    async def send() -> bytes:
        response = await transport.handle_async_request(httpx.Request("POST", "http://sts/"))
        return await response.aread()

    answered = asyncio.run(send())
    assert answered == b"through the pool", changed(
        "httpx", "AsyncHTTPTransport no longer answers with what _pool answered", STS_NETWORK
    )
    assert len(sent) == 1, changed(
        "httpx", "AsyncHTTPTransport no longer sends requests through _pool", STS_NETWORK
    )


def test_our_network_backend_implements_httpcores_interface_exactly() -> None:
    """Every method of httpcore's backend and stream interfaces is ours, with its parameters
    (a method added upstream would otherwise be inherited as ``NotImplementedError``)."""
    for theirs, ours in (
        (httpcore.AsyncNetworkBackend, AsyncioBackend),
        (httpcore.AsyncNetworkStream, AsyncioStream),
    ):
        for name, method in vars(theirs).items():
            if name.startswith("__") or not callable(method):
                continue
            assert name in vars(ours), changed(
                "httpcore", f"{theirs.__name__} has a new method {name}", STS_NETWORK
            )
            assert parameters(method) == parameters(getattr(ours, name)), changed(
                "httpcore",
                f"{theirs.__name__}.{name} now takes {parameters(method)}",
                STS_NETWORK,
            )


# What AsyncioStream.get_extra_info answers; anything else gets None.
EXTRA_INFO_ANSWERED = {"ssl_object", "client_addr", "server_addr", "socket", "is_readable"}


def test_httpcore_asks_a_pooled_connection_only_what_our_stream_answers() -> None:
    """httpcore asks an idle pooled connection ``get_extra_info("is_readable")`` before it
    reuses it (a server that closed it has made it readable); our stream answers that and the
    other keys httpcore asks. Two requests over one kept-alive connection show the keys."""
    asked: list[str] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    class CannedStream(httpcore.AsyncNetworkStream):
        def __init__(self) -> None:
            self.pending: list[bytes] = []

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self.pending.pop(0) if self.pending else b""

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if buffer.startswith(b"GET "):
                self.pending.append(answer)

        async def aclose(self) -> None:
            pass

        async def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.AsyncNetworkStream:
            return self

        def get_extra_info(self, info: str) -> Any:
            asked.append(info)
            return False if info == "is_readable" else None

    class CannedBackend(httpcore.AsyncNetworkBackend):
        connections = 0

        async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
            self.connections += 1
            return CannedStream()

    backend = CannedBackend()

    async def two_requests() -> None:
        async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
            for _ in range(2):
                response = await pool.request("GET", "http://sts/")
                assert response.content == b"ok"

    asyncio.run(two_requests())
    assert backend.connections == 1, changed(
        "httpcore", "the pool no longer reuses a kept-alive connection", STS_NETWORK
    )
    assert "is_readable" in asked, changed(
        "httpcore",
        'the pool no longer asks get_extra_info("is_readable") before reusing a connection '
        "(how does it now tell one the server closed?)",
        STS_NETWORK,
    )
    assert set(asked) <= EXTRA_INFO_ANSWERED, changed(
        "httpcore",
        f"the pool asks get_extra_info for {sorted(set(asked) - EXTRA_INFO_ANSWERED)}",
        STS_NETWORK + " (AsyncioStream.get_extra_info)",
    )


def test_typer_options_still_show_their_type_through_display_type_rich() -> None:
    from strongroom.cli import main  # it wraps typer's method and keeps the original

    method = main._display_type
    assert callable(method), changed(
        "typer",
        "TyperOption.display_type_rich is gone: help shows '<bool>' beside flags again",
        "src/strongroom/cli/main.py",
    )
    taken = list(inspect.signature(method).parameters)
    assert taken[:2] == ["self", "ctx"], changed(
        "typer",
        f"TyperOption.display_type_rich takes {taken}, not (self, ctx)",
        "src/strongroom/cli/main.py",
    )
