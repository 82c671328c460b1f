"""Replicas (SPEC sections 5, 6 and 11): two real ``strongroom server`` processes sharing one
fresh PostgreSQL database, as behind a load balancer.

A change acknowledged by one replica (a revoked token, a deleted association, a changed rule,
a written or deleted secret) is seen by the other within a second; data keys rotated and values
rewrapped while both serve reads and writes never fail a request; two writers racing on one
secret through different replicas get one success and one 409, or two versions, never a 500.

The two replicas serve the whole module; each test works on names of its own. Replicas that
start together on an empty database, an unreachable database at start and SIGTERM with held
connections are in tests/e2e/test_operations.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from strongroom.vault.service import CAS_MISMATCH
from tests.e2e.test_login_processes import Server
from tests.support.databases import fresh_database_url
from tests.support.login import key_token

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# SPEC section 11: "at once (at the latest within one second)".
PROPAGATION_SECONDS = 1.0


@dataclass
class Cluster:
    replicas: list[Server]
    database_url: str
    admins: list[httpx.Client] = field(default_factory=list)  # the admin, one per replica

    def login(self, replica: int, key: dict[str, str]) -> str:
        with httpx.Client(base_url=self.replicas[replica].url, timeout=30) as client:
            return key_token(client, key["access_id"], key["access_key"])

    def client(self, replica: int, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.replicas[replica].url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def ok(self, replica: int, method: str, path: str, **kwargs: Any) -> Any:
        """An admin call that must succeed; its JSON body (or None)."""
        response = self.admins[replica].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def cli(self, *args: str) -> str:
        """A ``strongroom`` command run beside the servers, as an operator runs it."""
        result = self.replicas[0].run_cli(*args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    with fresh_database_url("postgres", request, root) as database_url:
        env = {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRONGROOM_LOG_FORMAT": "json",
            "STRONGROOM_LOGIN_PROCESSES": "0",
            "STRONGROOM_LOGIN_FAILURE_LIMIT": "100000",
        }
        replicas = [Server(env, workers=1, cwd=root) for _ in range(2)]
        credentials = replicas[0].bootstrap()
        cluster = Cluster(replicas, database_url)
        try:
            with ThreadPoolExecutor(len(replicas)) as pool:
                list(pool.map(lambda server: server.start(), replicas))
            token = cluster.login(0, credentials)
            cluster.admins = [cluster.client(i, token) for i in range(len(replicas))]
            yield cluster
        finally:
            for admin in cluster.admins:
                admin.close()
            logs = [server.stop() for server in replicas]
            left = [pid for server in replicas for pid in server.kill_leftovers()]
        assert not left, f"left running: {left}"
        for log in logs:
            assert "Traceback" not in log, log


def eventually(condition: Callable[[], bool], message: str) -> None:
    """``condition()`` holds within PROPAGATION_SECONDS of now (checked once more at the end)."""
    deadline = time.monotonic() + PROPAGATION_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            assert condition(), f"{message} (not within {PROPAGATION_SECONDS} s)"
            return
        time.sleep(0.02)


def api_key(cluster: Cluster, name: str, *roles: str) -> dict[str, str]:
    key: dict[str, str] = cluster.ok(
        0, "POST", "/v1/auth-methods", json={"type": "api_key", "name": name}
    )
    for role in roles:
        cluster.ok(0, "POST", f"/v1/roles/{role}/associations", json={"auth_method": name})
    return key


# -- changes seen by every replica ----------------------------------------------------------


def test_a_token_revoked_through_one_replica_is_refused_by_the_other(cluster: Cluster) -> None:
    cluster.ok(0, "POST", "/v1/roles", json={"name": "revoke-user"})
    token = cluster.login(0, api_key(cluster, "revoke-key", "revoke-user"))
    with cluster.client(0, token) as on_a, cluster.client(1, token) as on_b:
        assert on_b.get("/v1/auth/token").status_code == 200  # known, and cached, by B
        assert on_a.delete("/v1/auth/token").status_code == 204
        eventually(lambda: on_b.get("/v1/auth/token").status_code == 401, "B still accepts it")


def test_a_deleted_association_revokes_its_tokens_on_the_other_replica(cluster: Cluster) -> None:
    cluster.ok(0, "POST", "/v1/roles", json={"name": "dissoc-user"})
    cluster.ok(
        0,
        "PUT",
        "/v1/roles/dissoc-user/rules",
        json={"path": "/dissoc/*", "capabilities": ["read"]},
    )
    cluster.ok(0, "POST", "/v1/secrets", json={"name": "/dissoc/a", "value": "a"})
    key = api_key(cluster, "dissoc-key", "dissoc-user")
    token = cluster.login(1, key)
    (association,) = cluster.ok(0, "GET", "/v1/roles/dissoc-user")["associations"]
    with cluster.client(1, token) as on_b:
        assert on_b.get("/v1/secrets/dissoc/a").status_code == 200
        cluster.ok(0, "DELETE", f"/v1/roles/dissoc-user/associations/{association['assoc_id']}")
        eventually(lambda: on_b.get("/v1/secrets/dissoc/a").status_code == 401, "B still reads")


def test_a_rule_changed_through_one_replica_takes_effect_on_the_other(cluster: Cluster) -> None:
    cluster.ok(0, "POST", "/v1/roles", json={"name": "rule-user"})
    cluster.ok(1, "POST", "/v1/secrets", json={"name": "/rule/a", "value": "a"})
    token = cluster.login(0, api_key(cluster, "rule-key", "rule-user"))
    rule = {"path": "/rule/*", "capabilities": ["read"]}
    with cluster.client(1, token) as on_b:
        assert on_b.get("/v1/secrets/rule/a").status_code == 403  # refused, and cached, by B
        cluster.ok(0, "PUT", "/v1/roles/rule-user/rules", json=rule)
        eventually(lambda: on_b.get("/v1/secrets/rule/a").status_code == 200, "not granted")
        cluster.ok(0, "DELETE", "/v1/roles/rule-user/rules", params={"path": "/rule/*"})
        eventually(lambda: on_b.get("/v1/secrets/rule/a").status_code == 403, "still allowed")
        cluster.ok(1, "PUT", "/v1/roles/rule-user/rules", json=rule)
        eventually(lambda: on_b.get("/v1/secrets/rule/a").status_code == 200, "not granted")
        cluster.ok(0, "PUT", "/v1/roles/rule-user/rules", json={**rule, "capabilities": ["deny"]})
        eventually(lambda: on_b.get("/v1/secrets/rule/a").status_code == 403, "not denied")


def test_a_secret_written_through_one_replica_is_read_through_the_other(cluster: Cluster) -> None:
    """B keeps the versions it read (db/hot.KeptVersionRows): an update, a deleted version and
    a deleted item through A each reach B's reads within the bound of a revocation."""
    cluster.ok(0, "POST", "/v1/secrets", json={"name": "/kept/a", "value": "one"})
    on_b = cluster.admins[1]

    def value_on_b() -> str | None:
        response = on_b.get("/v1/secrets/kept/a")
        return str(response.json()["value"]) if response.status_code == 200 else None

    assert value_on_b() == "one"  # read, and kept, by B
    cluster.ok(0, "PUT", "/v1/secrets/kept/a", json={"value": "two"})
    eventually(lambda: value_on_b() == "two", "B still answers the old version")
    cluster.ok(0, "DELETE", "/v1/secrets/kept/a", params={"version": 2})
    eventually(lambda: value_on_b() == "one", "B still answers the deleted version")
    cluster.ok(0, "DELETE", "/v1/secrets/kept/a")
    eventually(
        lambda: on_b.get("/v1/secrets/kept/a").status_code == 404, "B still answers the item"
    )


# -- data keys rotated and values rewrapped under load --------------------------------------


class Load:
    """Reads and writes against every replica until stopped; every answer that is not a
    success, or a value that is not the one written, is kept."""

    def __init__(self, cluster: Cluster, names: dict[str, str]) -> None:
        self.cluster = cluster
        self.names = names  # read-only values: name -> value
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.counts = [0] * len(cluster.replicas)
        self.threads = [
            threading.Thread(target=self._run, args=(replica,), daemon=True)
            for replica in range(len(cluster.replicas))
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, replica: int) -> None:
        admin = self.cluster.admins[replica]
        own = f"/rotate/written-by-{replica}"
        written = 0
        while not self.stop.is_set():
            for name, value in self.names.items():
                self._expect(admin.get(f"/v1/secrets{name}"), {"value": value})
            self._expect(
                admin.post("/v1/get-secret-value", json={"names": list(self.names)}), self.names
            )
            written += 1
            self._expect(admin.put(f"/v1/secrets{own}", json={"value": str(written)}), None)
            self._expect(admin.get(f"/v1/secrets{own}"), {"value": str(written)})
            self.counts[replica] += 1

    def _expect(self, response: httpx.Response, subset: dict[str, str] | None) -> None:
        request = f"{response.request.method} {response.request.url}"
        if not response.is_success:
            self.failures.append(f"{request}: {response.status_code} {response.text[:200]}")
        elif subset is not None and {k: response.json().get(k) for k in subset} != subset:
            self.failures.append(f"{request}: {response.text[:200]}")


def key_ids(cluster: Cluster, name: str | None = None) -> set[int]:
    """The data keys that seal stored values (of the item ``name``, or of every item)."""
    engine = create_engine(cluster.database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            query = (
                "SELECT DISTINCT key_id FROM item_versions JOIN items "
                "ON items.id = item_versions.item_id"
            )
            rows = connection.execute(
                text(query + " WHERE items.name = :name") if name else text(query),
                {"name": name} if name else {},
            )
            return {int(row[0]) for row in rows}
    finally:
        engine.dispose()


def test_rotations_and_rewraps_while_every_replica_serves_never_fail_a_request(
    cluster: Cluster,
) -> None:
    names = {f"/rotate/r{i}": f"value {i}" for i in range(5)}
    for name, value in names.items():
        cluster.ok(0, "POST", "/v1/secrets", json={"name": name, "value": value})
    for replica in range(len(cluster.replicas)):
        cluster.ok(
            replica,
            "POST",
            "/v1/secrets",
            json={"name": f"/rotate/written-by-{replica}", "value": "0"},
        )
    first = max(key_ids(cluster))

    with Load(cluster, names) as load:
        time.sleep(0.3)
        assert "is now the newest" in cluster.cli("keys", "rotate")
        # A write acknowledged after the rotation is sealed under the new key, on each replica.
        for replica in range(len(cluster.replicas)):
            probe = f"/rotate/probe-{replica}"
            cluster.ok(replica, "POST", "/v1/secrets", json={"name": probe, "value": "p"})
            assert key_ids(cluster, probe) == {first + 1}
        assert "Re-encrypted" in cluster.cli("keys", "rewrap")
        assert "is now the newest" in cluster.cli("keys", "rotate")
        assert "Re-encrypted" in cluster.cli("keys", "rewrap")
        time.sleep(0.3)
    assert not load.failures, load.failures[:20]
    assert all(count > 0 for count in load.counts), load.counts
    # Nothing is left under an older key: no replica sealed a value under the key it had.
    assert key_ids(cluster) == {first + 2}
    for server in cluster.replicas:
        ready = httpx.get(server.url + "/v1/sys/ready", timeout=10)
        assert ready.status_code == 200, ready.text


# -- two writers racing on one secret through two replicas ----------------------------------


def race(
    clients: Sequence[httpx.Client], method: str, path: str, body: dict[str, Any]
) -> list[httpx.Response]:
    """Send one request (``body`` as JSON) through every client at the same moment, one
    thread each; their responses, in the clients' order."""
    barrier = threading.Barrier(len(clients))

    def run(client: httpx.Client) -> httpx.Response:
        barrier.wait()
        return client.request(method, path, json=body)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(run, clients))


ROUNDS = 30


def test_racing_updates_with_the_same_expected_version_get_one_200_and_one_409(
    cluster: Cluster,
) -> None:
    cluster.ok(0, "POST", "/v1/secrets", json={"name": "/race/cas", "value": "0"})
    version = 1
    for round_ in range(ROUNDS):
        body = {"value": f"{round_}", "expected_version": version}
        answers = race(cluster.admins, "PUT", "/v1/secrets/race/cas", body)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 409], [answer.text for answer in answers]
        assert next(x for x in answers if x.status_code == 409).json()["error"] == "Conflict"
        version += 1
        assert next(x for x in answers if x.status_code == 200).json()["version"] == version
    assert cluster.ok(1, "GET", "/v1/secrets/race/cas")["version"] == ROUNDS + 1


def test_racing_updates_without_an_expected_version_both_become_versions(
    cluster: Cluster,
) -> None:
    cluster.ok(0, "POST", "/v1/secrets", json={"name": "/race/free", "value": "0"})
    version = 1
    for round_ in range(ROUNDS):
        answers = race(cluster.admins, "PUT", "/v1/secrets/race/free", {"value": f"{round_}"})
        assert [answer.status_code for answer in answers] == [200, 200], [
            answer.text for answer in answers
        ]
        assert sorted(answer.json()["version"] for answer in answers) == [version + 1, version + 2]
        version += 2
    versions = cluster.ok(1, "GET", "/v1/secrets/race/free/versions")["versions"]
    assert [v["version"] for v in versions] == list(range(1, 2 * ROUNDS + 2))


def test_racing_vault_writes_with_the_same_cas_get_one_success_and_vaults_cas_error(
    cluster: Cluster,
) -> None:
    token = cluster.admins[0].headers["Authorization"].removeprefix("Bearer ")
    vault = [
        httpx.Client(base_url=server.url, headers={"X-Vault-Token": token}, timeout=30)
        for server in cluster.replicas
    ]
    try:
        path = "/v1/secret/data/race/vault"
        assert vault[0].post(path, json={"data": {"n": "0"}}).status_code == 200
        for cas in range(1, ROUNDS // 2 + 1):
            body = {"data": {"n": str(cas)}, "options": {"cas": cas}}
            answers = race(vault, "POST", path, body)
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200, 400], [answer.text for answer in answers]
            refused = next(answer for answer in answers if answer.status_code == 400)
            assert refused.json() == {"errors": [CAS_MISMATCH]}
    finally:
        for client in vault:
            client.close()
    assert json.loads(cluster.ok(0, "GET", "/v1/secrets/race/vault")["value"]) == {
        "n": str(ROUNDS // 2)
    }
