"""StrongroomClient against a scripted server (httpx.MockTransport): the token cache, the one
re-login after a 401, error mapping, and what never appears in an error message."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from strongroom.cli.aws_login import AwsCredentials
from strongroom.cli.client import StrongroomClient
from strongroom.cli.errors import LoginFailedError, ServerError, ServerUnreachableError
from strongroom.cli.profiles import CachedToken, Profile, TokenCache
from tests.support.concurrency import run_at_once

URL = "http://strongroom.test:8300"
ACCESS_ID = "p-abcdefabcdef"
KEY = "the-access-key-never-shown"


@dataclass
class FakeServer:
    """Logs in anyone, issues t-1, t-2, …; accepts only the tokens in ``valid``."""

    lifetime: int = 1800
    valid: set[str] = field(default_factory=set)
    logins: list[dict[str, object]] = field(default_factory=list)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    login_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            if request.url.path == "/v1/auth/login":
                self.logins.append(json.loads(request.content))
                if self.login_status != 200:
                    return httpx.Response(
                        self.login_status,
                        json={
                            "error": "AuthenticationFailed",
                            "message": "access authentication failed",
                        },
                    )
                token = f"t-{len(self.logins)}"
                self.valid.add(token)
                return httpx.Response(
                    200,
                    json={
                        "token": token,
                        "expires_at": "2099-01-01T00:00:00Z",
                        "expires_in": self.lifetime,
                        "access_id": ACCESS_ID,
                        "identity": {},
                        "roles": ["r"],
                    },
                )
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            self.calls.append((request.url.path, token))
            if token not in self.valid:
                return httpx.Response(
                    401, json={"error": "Unauthorized", "message": "a valid token is required"}
                )
            return httpx.Response(200, json={"roles": []})


def make_client(
    tmp_path: Path,
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    profile: Profile | None = None,
    server_url: str = URL,
) -> StrongroomClient:
    profile = profile or Profile(
        name="default", access_id=ACCESS_ID, access_type="access_key", access_key=KEY
    )
    return StrongroomClient(
        profile,
        server_url=server_url,
        cache=TokenCache(tmp_path, profile.name, profile.access_id),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        aws_credentials=lambda: AwsCredentials("ASIAFAKE", "secret", "session"),
    )


def test_second_call_reuses_the_cached_token(tmp_path: Path) -> None:
    server = FakeServer()
    with make_client(tmp_path, server) as client:
        client.list_roles()
    with make_client(tmp_path, server) as client:
        client.list_roles()
    assert len(server.logins) == 1
    assert [token for _, token in server.calls] == ["t-1", "t-1"]


def test_a_token_about_to_expire_is_replaced(tmp_path: Path) -> None:
    server = FakeServer(lifetime=30)  # inside the 60 s refresh margin
    with make_client(tmp_path, server) as client:
        client.list_roles()
        client.list_roles()
    assert len(server.logins) == 2


def test_a_401_to_a_cached_token_logs_in_once_and_retries(tmp_path: Path) -> None:
    server = FakeServer()
    with make_client(tmp_path, server) as client:
        client.list_roles()
    server.valid.clear()  # revoked server-side
    with make_client(tmp_path, server) as client:
        client.list_roles()
    assert len(server.logins) == 2
    assert [token for _, token in server.calls] == ["t-1", "t-1", "t-2"]


def test_a_401_to_a_fresh_token_is_not_retried(tmp_path: Path) -> None:
    server = FakeServer()

    def refuse_every_token(request: httpx.Request) -> httpx.Response:
        response = server(request)
        server.valid.clear()
        return response

    with make_client(tmp_path, refuse_every_token) as client, pytest.raises(ServerError) as raised:
        client.list_roles()
    assert len(server.logins) == 1
    assert raised.value.status == 401
    assert "t-1" not in raised.value.render()


def test_a_cached_token_is_never_sent_to_another_server(tmp_path: Path) -> None:
    server = FakeServer()
    with make_client(tmp_path, server) as client:
        client.list_roles()
    other = FakeServer()
    with make_client(tmp_path, other, server_url="http://elsewhere.test:8300") as client:
        client.list_roles()
    assert other.calls == [("/v1/roles", "t-1")]  # its own t-1, from its own login
    assert len(other.logins) == 1


def test_a_refused_login_is_the_fixed_text_and_keeps_no_secret(tmp_path: Path) -> None:
    server = FakeServer(login_status=401)
    with make_client(tmp_path, server) as client, pytest.raises(LoginFailedError) as raised:
        client.list_roles()
    assert raised.value.render() == (
        "can't setup strongroom client: failed to get credentials.\n"
        "error: Desc: Failed to authenticate token based access.\n"
        "Status 401 Unauthorized, Error: AuthenticationFailed.\n"
        "Message: access authentication failed"
    )
    assert KEY not in raised.value.render()
    assert not (tmp_path / ".tmp_creds" / f"default-{ACCESS_ID}").exists()


@pytest.mark.parametrize(
    ("response", "expected", "hint"),
    [
        (
            httpx.Response(403, json={"error": "Forbidden", "message": "permission denied"}),
            "error: 403 Forbidden: permission denied",
            "set-role-rule",
        ),
        (
            httpx.Response(404, json={"error": "NotFound", "message": "no role named 'x'"}),
            "error: 404 NotFound: no role named 'x'",
            "list-roles",
        ),
        (
            httpx.Response(
                429,
                json={"error": "TooManyRequests", "message": "too many failed attempts"},
                headers={"Retry-After": "42"},
            ),
            "error: 429 TooManyRequests: too many failed attempts",
            "wait 42 s",
        ),
        (
            httpx.Response(502, text="<html>Bad gateway</html>", headers={"X-Request-ID": "abc"}),
            "error: 502 BadGateway: the server (or a proxy in front of it) gave no usable answer",
            "STS",
        ),
    ],
)
def test_error_statuses_say_what_happened_and_what_to_do(
    tmp_path: Path, response: httpx.Response, expected: str, hint: str
) -> None:
    server = FakeServer()

    def handler(request: httpx.Request) -> httpx.Response:
        return server(request) if request.url.path == "/v1/auth/login" else response

    with make_client(tmp_path, handler) as client, pytest.raises(ServerError) as raised:
        client.list_roles()
    rendered = raised.value.render()
    assert rendered.splitlines()[0] == expected
    assert rendered.splitlines()[1].startswith("hint: ")
    assert hint in rendered
    assert "t-1" not in rendered


def test_an_unreachable_server_is_named_with_a_hint(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with make_client(tmp_path, refuse) as client, pytest.raises(ServerUnreachableError) as raised:
        client.list_roles()
    assert f"cannot reach the Strongroom server at {URL}" in raised.value.message
    assert "STRONGROOM_URL" in (raised.value.hint or "")


def test_concurrent_commands_of_one_profile_log_in_once(tmp_path: Path) -> None:
    server = FakeServer()

    def command() -> None:
        with make_client(tmp_path, server) as client:
            client.list_roles()

    assert run_at_once(command, 6) == []
    assert len(server.logins) == 1


def test_two_aws_logins_never_share_a_signature(tmp_path: Path) -> None:
    """The server spends each signature once; every login signs a fresh nonce, so two logins
    within one X-Amz-Date second differ."""
    server = FakeServer()
    profile = Profile(name="default", access_id=ACCESS_ID, access_type="aws_iam")
    with make_client(tmp_path, server, profile=profile) as client:
        client.login()
        client.login()
    cloud_ids = [str(login["cloud_id"]) for login in server.logins]
    assert len(set(cloud_ids)) == 2
    assert all(login["access_type"] == "aws_iam" for login in server.logins)


def test_the_cache_file_records_expiry_and_server(tmp_path: Path) -> None:
    server = FakeServer()
    with make_client(tmp_path, server) as client:
        client.login()
    cache = TokenCache(tmp_path, "default", ACCESS_ID)
    record = json.loads(cache.path.read_text())
    assert record["token"] == "t-1"
    assert record["server_url"] == URL
    assert record["expires_at"] == "2099-01-01T00:00:00Z"
    loaded = cache.load(URL)
    assert isinstance(loaded, CachedToken)
    assert "t-1" not in repr(loaded)
    assert cache.load("http://elsewhere.test") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("..", "/v1/roles/%2E%2E"), (".", "/v1/roles/%2E"), ("a.b", "/v1/roles/a.b")],
)
def test_names_cannot_change_the_route(tmp_path: Path, name: str, expected: str) -> None:
    server = FakeServer()
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/auth/login":
            seen.append(request.url.raw_path)
        return server(request)

    with make_client(tmp_path, handler) as client:
        client.get_role(name)
    assert seen == [expected.encode()]
