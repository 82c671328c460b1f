"""No escalation through any change (SPEC section 4), attacked over HTTP on a real
``strongroom server`` process, on SQLite and on PostgreSQL.

Each test plays a user who holds a few rules and wants more: it makes the change an attacker
would (an association, a bounds change, removing a deny, re-setting a rule, a crafted rule
set) and then tries to use what it would have gained, with its token or a fresh login. One
server per database serves the whole module; every test works on names of its own.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess
from tests.support.databases import fresh_database_url
from tests.support.login import key_login
from tests.support.moto_world import MotoWorld
from tests.support.signing import sign_get_caller_identity

pytestmark = pytest.mark.slow

ALL = ["read", "list", "create", "update", "delete"]


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client  # the bootstrap admin's token
    moto: MotoWorld

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """An admin call that must succeed; its JSON body (or None)."""
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def role(self, name: str, *rules: dict[str, Any]) -> None:
        self.ok("POST", "/v1/roles", json={"name": name})
        for rule in rules:
            self.ok("PUT", f"/v1/roles/{name}/rules", json=rule)

    def api_key(self, name: str, *roles: str) -> dict[str, str]:
        """An api_key auth method associated with ``roles``: its access ID and key."""
        created: dict[str, str] = self.ok(
            "POST", "/v1/auth-methods", json={"type": "api_key", "name": name}
        )
        for role in roles:
            self.ok("POST", f"/v1/roles/{role}/associations", json={"auth_method": name})
        return created

    def login(self, key: dict[str, str]) -> dict[str, Any]:
        response = httpx.post(
            self.server.url + "/v1/auth/login",
            json=key_login(key["access_id"], key["access_key"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def secret(self, name: str, value: str = "s3cr3t") -> None:
        self.ok("POST", "/v1/secrets", json={"name": name, "value": value})

    def rules_of(self, role: str) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self.ok("GET", f"/v1/roles/{role}")["rules"]
        return rules


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, moto: MotoWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("no-escalation")
    with fresh_database_url(request.param, request, root) as database_url:
        server = ServerProcess(
            {
                "STRONGROOM_DATABASE_URL": database_url,
                "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "STRONGROOM_STS_EXTRA_ENDPOINTS": moto.server.url,
                "STRONGROOM_LOG_FORMAT": "json",
                "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
            },
            cwd=root,
        )
        credentials = server.bootstrap()
        server.start()
        try:
            world = World(server, httpx.Client(base_url=server.url, timeout=30), moto)
            token = world.login(credentials)["token"]
            world.admin.headers["Authorization"] = f"Bearer {token}"
            yield world
            world.admin.close()
        finally:
            log = server.stop()
        assert "Traceback" not in log, log


# -- associations and auth methods ----------------------------------------------------------


def test_associating_a_role_needs_everything_it_grants(world: World) -> None:
    world.secret("/assoc/prod/db")
    world.role("assoc-strong", {"path": "/assoc/prod/*", "capabilities": ["read"]})
    world.role("assoc-weak", {"path": "/assoc/dev/a", "capabilities": ["read"]})
    world.role(
        "assoc-user",
        {"path": "/assoc/dev/*", "capabilities": ["read", "list"]},
        {"rule_type": "role-rule", "path": "/assoc-*", "capabilities": ["update"]},
        {"rule_type": "auth-method-rule", "path": "/assoc-key", "capabilities": ["read"]},
    )
    key = world.api_key("assoc-key", "assoc-user")
    with world.client(world.login(key)["token"]) as attacker:
        # Attack: associate the caller's own auth method with a stronger role, then log in
        # again and read with that role's power.
        refused = attacker.post(
            "/v1/roles/assoc-strong/associations", json={"auth_method": "assoc-key"}
        )
        assert refused.status_code == 403, refused.text
        assert "everything the role grants" in refused.json()["message"]
        # A role whose every grant the caller holds may be associated.
        allowed = attacker.post(
            "/v1/roles/assoc-weak/associations", json={"auth_method": "assoc-key"}
        )
        assert allowed.status_code == 201, allowed.text
    again = world.login(key)
    assert sorted(again["roles"]) == ["assoc-user", "assoc-weak"]
    with world.client(again["token"]) as attacker:
        assert attacker.get("/v1/secrets/assoc/prod/db").status_code == 403


def test_associating_a_role_needs_grants_that_last_as_long(world: World) -> None:
    world.role("assocttl-forever", {"path": "/assocttl/*", "capabilities": ["read"]})
    world.role(
        "assocttl-user",
        {"path": "/assocttl/*", "capabilities": ["read"], "ttl": 60},
        {"rule_type": "role-rule", "path": "/assocttl-*", "capabilities": ["update"]},
        {"rule_type": "auth-method-rule", "path": "/assocttl-key", "capabilities": ["read"]},
    )
    key = world.api_key("assocttl-key", "assocttl-user")
    with world.client(world.login(key)["token"]) as attacker:
        # Attack: the caller reads /assocttl/* for an hour only; a role that grants it for
        # ever, associated with the caller's method, would outlive that hour.
        refused = attacker.post(
            "/v1/roles/assocttl-forever/associations", json={"auth_method": "assocttl-key"}
        )
        assert refused.status_code == 403, refused.text
    assert world.login(key)["roles"] == ["assocttl-user"]


def test_widening_an_auth_method_needs_everything_its_roles_grant(world: World) -> None:
    moto = world.moto
    world.secret("/widen/prod/db")
    world.role("widen-strong", {"path": "/widen/prod/*", "capabilities": ["read"]})
    world.ok(
        "POST",
        "/v1/auth-methods",
        json={
            "type": "aws_iam",
            "name": "widen-iam",
            "bound_aws_account_id": [moto.app.account],
            "bound_role_name": ["other-role"],
            "sts_url": moto.server.url,
            "jwt_ttl": 30,
        },
    )
    world.ok("POST", "/v1/roles/widen-strong/associations", json={"auth_method": "widen-iam"})
    world.role(
        "widen-user",
        {"rule_type": "auth-method-rule", "path": "/widen-iam", "capabilities": ["read", "update"]},
    )
    key = world.api_key("widen-key", "widen-user")
    with world.client(world.login(key)["token"]) as attacker:
        # Attack: let the caller's own IAM role (app-role) log in through a method associated
        # with a stronger role, then log in with it.
        refused = attacker.patch(
            "/v1/auth-methods/widen-iam", json={"bound_role_name": ["other-role", "app-role"]}
        )
        assert refused.status_code == 403, refused.text
        # Every other way of letting more in, or keeping tokens longer, is refused too.
        widenings: tuple[dict[str, Any], ...] = (
            {"bound_role_name": []},
            {"bound_aws_account_id": [moto.app.account, "999999999999"]},
            {"bound_arn": [moto.app.arn]},
            {"jwt_ttl": 720},
        )
        for widening in widenings:
            refused = attacker.patch("/v1/auth-methods/widen-iam", json=widening)
            assert refused.status_code == 403, (widening, refused.text)
        # A value no method may have is a 400 before any widening check: sts_url never null
        # (a null counted as a widening, and was a 403 here, a stored null for the admin),
        # never an address that is not an STS endpoint (server-side request forgery).
        for invalid in (
            {"sts_url": None},
            {"sts_url": ""},
            {"sts_url": "http://169.254.169.254/latest/meta-data/"},
            {"bound_role_name": None},
        ):
            refused = attacker.patch("/v1/auth-methods/widen-iam", json=invalid)
            assert refused.status_code == 400, (invalid, refused.text)
            assert refused.json()["error"] == "InvalidRequest", (invalid, refused.text)
        # Narrowing needs update alone.
        narrowed = attacker.patch(
            "/v1/auth-methods/widen-iam", json={"jwt_ttl": 10, "description": "tightened"}
        )
        assert narrowed.status_code == 200, narrowed.text
    signed = sign_get_caller_identity(moto.app.credentials, url=moto.server.url + "/")
    method = world.ok("GET", "/v1/auth-methods/widen-iam")
    assert method["bound_role_name"] == ["other-role"]
    login = httpx.post(
        world.server.url + "/v1/auth/login",
        json={"access_id": method["access_id"], "access_type": "aws_iam", **signed},
        timeout=30,
    )
    assert login.status_code == 401, login.text


# -- lifting a deny ------------------------------------------------------------------------


@pytest.mark.parametrize("door", ["delete-rule", "shorten-rule", "delete-role", "dissociate"])
def test_removing_a_deny_needs_what_it_took_away(world: World, door: str) -> None:
    name = f"deny-{door}"
    world.secret(f"/{name}/secret")
    world.secret(f"/{name}/open")
    deny = {"path": f"/{name}/secret", "capabilities": ["deny"]}
    in_own_role = door in ("delete-rule", "shorten-rule")
    world.role(
        name,
        {"path": f"/{name}/*", "capabilities": ["read", "list"]},
        {"rule_type": "role-rule", "path": f"/{name}*", "capabilities": ["update", "delete"]},
        *([deny] if in_own_role else []),
    )
    roles = [name] if in_own_role else [name, f"{name}-deny"]
    if not in_own_role:
        world.role(f"{name}-deny", deny)  # a deny-only role the caller holds
    key = world.api_key(f"{name}-key", *roles)
    token = world.login(key)["token"]
    with world.client(token) as attacker:
        assert attacker.get(f"/v1/secrets/{name}/secret").status_code == 403
        if door == "delete-rule":
            # Attack: delete the deny rule of one's own role, read with the same token.
            change = attacker.delete(f"/v1/roles/{name}/rules", params={"path": f"/{name}/secret"})
        elif door == "shorten-rule":
            # Attack: re-set the deny with a one-minute ttl; a minute later it is gone.
            change = attacker.put(
                f"/v1/roles/{name}/rules",
                json={"path": f"/{name}/secret", "capabilities": ["deny"], "ttl": 1},
            )
        elif door == "delete-role":
            # Attack: delete the deny-only role, log in again without it.
            change = attacker.delete(f"/v1/roles/{name}-deny")
        else:
            # Attack: cut the deny role off one's own method, log in again without it.
            assoc_id = world.ok("GET", f"/v1/roles/{name}-deny")["associations"][0]["assoc_id"]
            change = attacker.delete(f"/v1/roles/{name}-deny/associations/{assoc_id}")
        assert change.status_code == 403, change.text
        assert "deny" in change.json()["message"]
        assert attacker.get(f"/v1/secrets/{name}/secret").status_code == 403
        assert attacker.get(f"/v1/secrets/{name}/open").status_code == 200  # token still good
    with world.client(world.login(key)["token"]) as again:
        assert again.get(f"/v1/secrets/{name}/secret").status_code == 403
    denies = [r for r in world.rules_of(roles[-1]) if r["path"] == f"/{name}/secret"]
    assert denies == [{**denies[0], "capabilities": ["deny"], "expires_at": None}]
    # Whoever holds everything there may lift it.
    lifted = world.admin.delete(f"/v1/roles/{roles[-1]}/rules", params={"path": deny["path"]})
    assert lifted.status_code == 204, lifted.text
    with world.client(token) as attacker:
        assert attacker.get(f"/v1/secrets/{name}/secret").status_code == 200


def test_replacing_a_deny_in_another_role_needs_what_it_took_away(world: World) -> None:
    world.secret("/others/secret", "the service's secret")
    world.role(
        "others-svc",
        {"path": "/others/*", "capabilities": ["read"]},
        {"path": "/others/secret", "capabilities": ["deny"]},
    )
    service = world.api_key("others-svc-key", "others-svc")
    world.role(
        "others-user",
        {"path": "/others/*", "capabilities": ["list"]},
        {"rule_type": "role-rule", "path": "/others-svc", "capabilities": ["update"]},
    )
    key = world.api_key("others-user-key", "others-user")
    with world.client(world.login(key)["token"]) as attacker:
        # Attack: the caller may only list /others/*, but replacing the service's deny with a
        # list rule would let the service read /others/secret.
        refused = attacker.put(
            "/v1/roles/others-svc/rules",
            json={"path": "/others/secret", "capabilities": ["list"]},
        )
        assert refused.status_code == 403, refused.text
    with world.client(world.login(service)["token"]) as svc:
        assert svc.get("/v1/secrets/others/secret").status_code == 403


# -- expiry ----------------------------------------------------------------------------------


def test_a_rule_held_with_a_ttl_cannot_be_reset_without_one(world: World) -> None:
    world.role(
        "ttl-user",
        {"path": "/ttl/*", "capabilities": ["read"], "ttl": 60},
        {"rule_type": "role-rule", "path": "/ttl-*", "capabilities": ["update"]},
    )
    world.role("ttl-other")
    key = world.api_key("ttl-key", "ttl-user", "ttl-other")
    before = world.rules_of("ttl-user")
    with world.client(world.login(key)["token"]) as attacker:
        # Attack: re-set the rule held for an hour without its ttl (in the same role or
        # another one the caller holds), or with a later expiry: read for ever.
        for role, extra in [("ttl-user", {}), ("ttl-other", {}), ("ttl-user", {"ttl": 120})]:
            refused = attacker.put(
                f"/v1/roles/{role}/rules",
                json={"path": "/ttl/*", "capabilities": ["read"], **extra},
            )
            assert refused.status_code == 403, (role, extra, refused.text)
        # An expiry no later than its own is fine.
        allowed = attacker.put(
            "/v1/roles/ttl-other/rules",
            json={"path": "/ttl/app/*", "capabilities": ["read"], "ttl": 30},
        )
        assert allowed.status_code == 200, allowed.text
    assert world.rules_of("ttl-user") == before
    assert [r["path"] for r in world.rules_of("ttl-other")] == ["/ttl/app/*"]


# -- the coverage check's budget ---------------------------------------------------------------

# Wildcard-dense patterns (seven '*' each, within the bound of eight). As denies they need no
# grant, so nothing stops a caller from writing them into its own role; afterwards deciding
# any grant of that caller means exploring the subset construction of their union.
DENSE = ["/*" + "*".join(order) + "*/x" for order in itertools.permutations("abcdef")][::37][:8]


def test_a_too_complex_rule_set_is_refused_and_never_stalls_reads(world: World) -> None:
    world.secret("/budget/value", "still here")
    world.role(
        "budget-user",
        {"path": "/*", "capabilities": ["read"]},
        {"rule_type": "role-rule", "path": "/budget-user", "capabilities": ["update"]},
    )
    key = world.api_key("budget-key", "budget-user")
    world.role("budget-reader", {"path": "/budget/*", "capabilities": ["read"]})
    reader_key = world.api_key("budget-reader-key", "budget-reader")
    with world.client(world.login(key)["token"]) as attacker:
        for pattern in DENSE:
            put = attacker.put(
                "/v1/roles/budget-user/rules", json={"path": pattern, "capabilities": ["deny"]}
            )
            assert put.status_code == 200, put.text

        # Attack: each grant the caller now asks for makes the server decide coverage against
        # that union: seconds of CPU on the event loop per request, for every client.
        def attack() -> list[httpx.Response]:
            return [
                attacker.put(
                    "/v1/roles/budget-user/rules", json={"path": "/+", "capabilities": ["read"]}
                )
                for _ in range(2)
            ]

        reads: list[int] = []
        during = 0
        done = threading.Event()
        with (
            world.client(world.login(reader_key)["token"]) as reader,
            ThreadPoolExecutor(3) as pool,
        ):
            attacks = [pool.submit(attack) for _ in range(3)]
            pool.submit(lambda: [a.result() for a in attacks]).add_done_callback(
                lambda _: done.set()
            )
            while not done.is_set() or not reads:
                during += not done.is_set()
                reads.append(reader.get("/v1/secrets/budget/value").status_code)
            answers = [response for a in attacks for response in a.result()]
    # Every attack PUT was refused as too complex, and every read was answered meanwhile.
    assert {(r.status_code, r.json()["error"]) for r in answers} == {(400, "RuleTooComplex")}
    assert set(reads) == {200}
    assert during > 0
