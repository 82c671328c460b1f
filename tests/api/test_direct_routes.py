"""Logins and secret reads skip FastAPI's routing (api/direct_routes.py) and answer exactly as
the routed endpoints would; every other request still goes to FastAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from strongroom.api.direct_routes import DirectRoute, DirectRoutes
from strongroom.api.routes import auth, secrets
from strongroom.config import Settings
from strongroom.crypto import LocalMasterKey
from strongroom.errors import NotFoundError
from tests.support.harness import Harness, running_app


class _App:
    """The inner app (FastAPI's routing): records what reached it."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _echo(request: Request) -> Response:
    if request.path_params.get("name") == "missing":
        raise NotFoundError("no item named /missing")
    return JSONResponse({"endpoint": request.scope["route"].path, **request.path_params})


def _routes() -> list[DirectRoute]:
    """The app's direct routes, with an endpoint that shows what it was given."""
    return [
        dataclasses.replace(route, endpoint=_echo)
        for route in (secrets.direct_route(), auth.direct_route())
    ]


def _call(method: str, path: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    inner = _App()
    direct = DirectRoutes(inner, routes=_routes())
    scope: Scope = {"type": "http", "method": method, "path": path, "headers": [], "state": {}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(direct(scope, receive, send))  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], body, inner.paths


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/auth/login", b'{"endpoint":"/v1/auth/login"}'),
        (
            "GET",
            "/v1/secrets/app/db",
            b'{"endpoint":"/v1/secrets/{name:path}","name":"app/db"}',
        ),
        (
            "GET",
            "/v1/secrets/app/versions-of-it",
            b'{"endpoint":"/v1/secrets/{name:path}","name":"app/versions-of-it"}',
        ),
    ],
)
def test_a_login_and_a_read_go_straight_to_their_endpoints(
    method: str, path: str, expected: bytes
) -> None:
    status, body, inner = _call(method, path)
    assert (status, body, inner) == (200, expected, [])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/auth/login"),
        ("PUT", "/v1/auth/login"),
        ("POST", "/v1/auth/login/"),
        ("POST", "/v1/auth/logins"),
        ("POST", "/V1/auth/login"),
        ("POST", "/v1/auth/token"),
        ("HEAD", "/v1/secrets/app/db"),
        ("PUT", "/v1/secrets/app/db"),
        ("DELETE", "/v1/secrets/app/db"),
        ("GET", "/v1/secrets/"),  # no name
        ("GET", "/v1/secrets"),
        ("GET", "/v1/secrets/app/db/versions"),  # the versions listing's route
        ("GET", "/v1/secret/data/app/db"),  # Vault's KV
    ],
)
def test_anything_else_goes_on_to_fastapi(method: str, path: str) -> None:
    status, _, inner = _call(method, path)
    assert status == 418
    assert inner == [(method, path)]


def test_an_endpoints_error_is_answered_as_fastapi_answers_it() -> None:
    status, body, inner = _call("GET", "/v1/secrets/missing")
    assert status == 404
    assert b'"error":"NotFound"' in body
    assert inner == []


def test_login_errors_are_the_routed_endpoints(harness: Harness) -> None:
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


def _reads(client: httpx.Client, admin: dict[str, str]) -> list[tuple[int, str, Any]]:
    """The same reads, good and bad: (status, content type, body without its times)."""
    answers: list[httpx.Response] = [
        client.get("/v1/secrets/direct/a", headers=admin),
        client.get("/v1/secrets/direct/a", params={"version": 1}, headers=admin),
        client.get("/v1/secrets/direct/a", params={"version": 2}, headers=admin),
        client.get("/v1/secrets/direct/a", params={"version": "x"}, headers=admin),
        client.get("/v1/secrets/direct/missing", headers=admin),
        client.get("/v1/secrets/direct/a"),
        client.get("/v1/secrets/direct/a", headers={"Authorization": "Bearer t-nope"}),
        client.get("/v1/secrets/direct/a/versions", headers=admin),
    ]
    out = []
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store"
        assert "x-request-id" in answer.headers
        body = answer.json()
        if isinstance(body, dict):
            body.pop("created_at", None)
            for version in body.get("versions", []):
                version.pop("created_at", None)
        out.append((answer.status_code, answer.headers["content-type"], body))
    return out


def test_reads_answer_as_fastapis_routing_does(
    harness: Harness, make_settings: Callable[..., Settings], master_key: LocalMasterKey
) -> None:
    admin = harness.admin.headers
    created = harness.client.post(
        "/v1/secrets", json={"name": "/direct/a", "value": "one"}, headers=admin
    )
    assert created.status_code == 201
    direct = _reads(harness.client, admin)
    # The same database, served by an app that routes every request through FastAPI.
    with running_app(make_settings(direct_routes=False), master_key=master_key) as routed_app:
        routed = _reads(routed_app.client, admin)
    assert direct == routed
    assert [status for status, _, _ in direct] == [200, 200, 404, 400, 404, 401, 401, 200]


def test_direct_requests_are_audited_and_counted_under_their_routes(harness: Harness) -> None:
    harness.login_key(harness.admin.access_id, harness.admin.access_key)
    admin = harness.admin.headers
    harness.client.post("/v1/secrets", json={"name": "/counted", "value": "v"}, headers=admin)
    assert harness.client.get("/v1/secrets/counted", headers=admin).status_code == 200
    metrics = harness.client.get("/metrics").text
    for route in ("/v1/auth/login", "/v1/secrets/{name:path}"):
        found = re.search(
            rf'^strongroom_http_requests_total\{{route="{re.escape(route)}",status="200"\}} (\S+)$',
            metrics,
            re.M,
        )
        assert found is not None, route
        assert float(found.group(1)) >= 1
    events = harness.client.get("/v1/audit", params={"limit": 5}, headers=admin).json()["events"]
    assert any(e["action"] == "secret.read" and e["path"] == "/counted" for e in events)
