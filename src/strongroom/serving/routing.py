"""Which new connections go to a login process: a pure decision on the first bytes received.

Routing is a scheduling decision, not a security one: a login process serves the whole API with
the same checks as a worker, so a request that fools this test lands on the same code. The test
is therefore strict and cheap; anything unusual stays with the worker.
"""

from __future__ import annotations

# The request line of a login, as every HTTP/1.x client writes it. A query string, another
# version, lower-case method or a leading blank line fails the test: the worker serves those.
_LOGIN_REQUEST_LINES = (b"POST /v1/auth/login HTTP/1.1\r\n", b"POST /v1/auth/login HTTP/1.0\r\n")

# A connection's first chunk larger than this is served by the worker: it must fit one message
# on the Unix socket (login bodies are a few KiB; the 1 MiB body limit applies either way).
MAX_FIRST_CHUNK = 64 * 1024


def starts_login_request(first_chunk: bytes) -> bool:
    """True when ``first_chunk`` (a connection's first bytes) begins a login request.

    Only the request line is looked at; the headers and body may still be arriving.
    """
    if len(first_chunk) > MAX_FIRST_CHUNK:
        return False
    return first_chunk.startswith(_LOGIN_REQUEST_LINES)
