"""Vault's ``LIST`` method on uvicorn's httptools protocol (SPEC section 10).

Vault clients list with ``LIST /v1/secret/metadata/<p>`` (hvac sends only that; Vault's Go
client adds ``?list=true``). llhttp, httptools' parser, knows a fixed set of methods and answers
any other with 400 before the app sees it. :class:`VaultMethodsProtocol` therefore rewrites the
method token of a request that starts with ``LIST `` to ``LINK `` — a method llhttp knows, of
the same length, so nothing else in the stream moves — and gives the app ``LIST`` back as the
request's method. A request that really says ``LINK`` stays ``LINK`` (no route serves it).

Only the start of a request is rewritten, which is where a chunk begins for clients that send
one request at a time on a connection (all of them: no Vault client pipelines). A LIST that
starts in the middle of a chunk meets the parser as before: 400.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_LIST = b"LIST "
_STAND_IN = b"LINK "


class VaultMethodsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus ``LIST`` (see the module docstring)."""

    # Set by the parser callbacks: no byte of the next request has been parsed yet.
    _at_request_start = True
    # The request being parsed said LIST.
    _listing = False

    def data_received(self, data: bytes) -> None:
        if self._at_request_start and data.startswith(_LIST):
            data = _STAND_IN + data[len(_LIST) :]
            self._listing = True
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._at_request_start = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._listing:
            # The request's task was created above but has not run: it reads this scope.
            self.scope["method"] = "LIST"
            self._listing = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._at_request_start = True
