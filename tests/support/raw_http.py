"""HTTP/1.1 requests written exactly as given, for what httpx will not send.

httpx (like most clients) merges a repeated header into one line; a proxy in front of the
server does not: it appends a second ``X-Forwarded-For`` line after the one its client sent.
:func:`raw_request` sends every header line as listed, in order, from an optional local
address, and reads the answer with h11.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first line of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    base_url: str,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    json_body: Any = None,
    local_address: str | None = None,
    timeout: float = 15.0,
) -> RawResponse:
    """Send one request with ``headers`` as separate lines, in order; return the answer.

    Host, Connection: close and, for ``json_body``, Content-Type and Content-Length are added.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = b"" if json_body is None else json.dumps(json_body).encode()
    lines = [("Host", f"{host}:{port}"), ("Connection", "close"), *headers]
    if json_body is not None:
        lines += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    connection = h11.Connection(our_role=h11.CLIENT)
    with socket.create_connection(
        (host, port),
        timeout=timeout,
        source_address=(local_address, 0) if local_address else None,
    ) as sock:
        sock.sendall(connection.send(h11.Request(method=method, target=path, headers=lines)))
        if body:
            sock.sendall(connection.send(h11.Data(data=body)))
        sock.sendall(connection.send(h11.EndOfMessage()))
        status = 0
        answer_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                answer_headers = [(k.decode(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return RawResponse(status, answer_headers, b"".join(chunks))
