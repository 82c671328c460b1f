"""The front chain runs before FastAPI's own stack (api/front.py), and a bug anywhere still
answers a bare JSON 500 that is audited and logged."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from strongroom.api.front import StrongroomApp
from strongroom.roles.service import RoleService
from tests.support.harness import Harness


class _Recorder:
    """A middleware that notes each HTTP request it sees."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str]], name: str) -> None:
        self.app, self.seen, self.name = app, seen, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((self.name, scope["path"]))
        await self.app(scope, receive, send)


def _app(seen: list[tuple[str, str]]) -> StrongroomApp:
    app = StrongroomApp()

    @app.get("/routed")
    async def routed() -> dict[str, str]:
        return {"routed": "yes"}

    # FastAPI's own stack: what the front chain must come before.
    app.add_middleware(_Recorder, seen=seen, name="fastapi-stack")

    def front(framework: ASGIApp) -> ASGIApp:
        async def answer_or_pass(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(("front", scope["path"]))
            assert scope["app"] is app  # as Starlette would set it, for the endpoints
            if scope["path"] == "/direct":
                await PlainTextResponse("direct")(scope, receive, send)
                return
            await framework(scope, receive, send)

        return answer_or_pass

    app.put_in_front(front)
    return app


def test_the_front_chain_answers_before_fastapis_stack_and_passes_the_rest_on() -> None:
    seen: list[tuple[str, str]] = []
    with TestClient(_app(seen)) as client:  # the lifespan still reaches FastAPI
        direct = client.get("/direct")
        routed = client.get("/routed")
        missing = client.get("/missing")
    assert (direct.status_code, direct.text) == (200, "direct")
    assert (routed.status_code, routed.json()) == (200, {"routed": "yes"})
    assert missing.status_code == 404
    assert seen == [
        ("front", "/direct"),
        ("front", "/routed"),
        ("fastapi-stack", "/routed"),
        ("front", "/missing"),
        ("fastapi-stack", "/missing"),
    ]


def test_a_bug_in_a_routed_endpoint_is_a_bare_audited_500(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret-detail-that-must-not-leak")

    monkeypatch.setattr(RoleService, "list", broken)
    response = harness.client.get("/v1/roles", headers=harness.admin.headers)
    assert response.status_code == 500
    assert response.json() == {"error": "InternalError", "message": "internal error"}
    assert "secret-detail" not in response.text
    assert response.headers["cache-control"] == "no-store"
    request_id = response.headers["x-request-id"]
    monkeypatch.undo()
    events = harness.client.get(
        "/v1/audit", params={"limit": 10}, headers=harness.admin.headers
    ).json()["events"]
    (event,) = [e for e in events if e["request_id"] == request_id]
    assert (event["status"], event["reason"]) == (500, "internal error: RuntimeError")
