"""``POST /v1/auth/login`` skips FastAPI's routing (api/routes/auth.py, LoginFastPath) and
answers exactly as the routed endpoint would; every other request still goes to FastAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from strongroom.api.routes import auth
from strongroom.api.routes.auth import LoginFastPath
from tests.support.harness import Harness


class _App:
    """The inner app: records what reached it."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class _Login:
    async def login_json(self, raw: bytes, context: Any) -> dict[str, Any]:
        return {"token": "t-test", "raw": raw.decode(), "source_ip": context.event.source_ip}


class _Services:
    login = _Login()


class _Event:
    action = "POST /v1/auth/login"
    source_ip = "198.51.100.9"
    time = None
    reason = ""


def _call(path: str, method: str = "POST") -> tuple[int, bytes, Scope]:
    import asyncio

    inner = _App()
    fast = LoginFastPath(inner, services=_Services(), route=auth.login_route())  # type: ignore[arg-type]
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "state": {"audit": _Event()},
    }
    sent: list[dict[str, Any]] = []
    chunks: Iterator[dict[str, Any]] = iter(
        [{"type": "http.request", "body": b'{"a":1}', "more_body": False}]
    )

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(fast(scope, receive, send))  # type: ignore[arg-type]
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, body, {**scope, "inner": inner.paths}


def test_only_an_exact_login_post_takes_the_fast_path() -> None:
    status, body, scope = _call("/v1/auth/login")
    assert status == 200
    assert b'"raw":"{\\"a\\":1}"' in body
    assert b"198.51.100.9" in body
    assert scope["inner"] == []
    assert scope["route"].path == "/v1/auth/login"  # the metrics label
    assert scope["state"]["audit"].action == "auth.login"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/auth/login"),
        ("PUT", "/v1/auth/login"),
        ("POST", "/v1/auth/login/"),
        ("POST", "/v1/auth/logins"),
        ("POST", "/V1/auth/login"),
        ("POST", "/v1/auth/token"),
    ],
)
def test_anything_else_goes_on_to_the_app(method: str, path: str) -> None:
    status, _, scope = _call(path, method)
    assert status == 418
    assert scope["inner"] == [(method, path)]


def test_errors_are_the_routed_endpoints(harness: Harness) -> None:
    client = harness.client
    malformed = client.post(
        "/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "InvalidRequest"
    assert "x-request-id" in malformed.headers
    huge = client.post("/v1/auth/login", content=b"x" * (1024 * 1024 + 1))
    assert huge.status_code == 413
    assert huge.json()["error"] == "PayloadTooLarge"

    def chunked() -> Iterator[bytes]:  # no Content-Length: cut off while streaming
        for _ in range(17):
            yield b"x" * 65536

    streamed = client.post("/v1/auth/login", content=chunked())
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "PayloadTooLarge"
    wrong_method = client.get("/v1/auth/login")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "MethodNotAllowed"
    events = client.get("/v1/audit", params={"limit": 10}, headers=harness.admin.headers).json()[
        "events"
    ]
    logins = [e for e in events if e["action"] == "auth.login"]
    assert {e["status"] for e in logins} >= {400, 413}
    assert all(e["reason"] for e in logins if e["status"] >= 400)


def test_fast_path_logins_are_counted_under_the_login_route(harness: Harness) -> None:
    harness.login_key(harness.admin.access_id, harness.admin.access_key)
    metrics = harness.client.get("/metrics").text
    found = re.search(
        r'^strongroom_http_requests_total\{route="/v1/auth/login",status="200"\} (\S+)$',
        metrics,
        re.M,
    )
    assert found is not None
    assert float(found.group(1)) >= 2
