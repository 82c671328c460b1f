"""Data keys that change while apps run (SPEC section 6): two apps on one database stand for
two replicas (or two workers); ``keys rotate`` and ``keys rewrap`` are run beside them as the
CLI runs them. The replicas with real server processes are tests/e2e/test_replicas.py."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from strongroom.config import Settings
from strongroom.crypto import DecryptionError, LocalMasterKey, item_context, seal
from strongroom.db.keys import load_or_create_keys, rewrap_values, rotate
from strongroom.db.tables import item_versions, items
from tests.support.harness import Harness, running_app


@pytest.fixture
def other_replica(
    harness: Harness, make_settings: Callable[..., Settings], master_key: LocalMasterKey
) -> Iterator[TestClient]:
    """A second app on the harness's database, with the harness admin's token."""
    with running_app(make_settings(), master_key=master_key) as replica:
        replica.client.headers.update(harness.admin.headers)
        yield replica.client


def key_of(harness: Harness, name: str) -> int:
    """The data key that seals the newest version of ``name``, as stored."""
    with harness.services.database.read() as connection:
        return int(
            connection.execute(
                select(item_versions.c.key_id)
                .join(items, items.c.id == item_versions.c.item_id)
                .where(items.c.name == name)
                .order_by(item_versions.c.version.desc())
                .limit(1)
            ).scalar_one()
        )


def create_secret(harness: Harness, name: str, value: str) -> None:
    """Create the secret ``name`` as the harness's admin (201, or the test fails)."""
    answer = harness.client.post(
        "/v1/secrets", json={"name": name, "value": value}, headers=harness.admin.headers
    )
    assert answer.status_code == 201, answer.text


def rewrap(harness: Harness, master_key: LocalMasterKey) -> int:
    """``strongroom keys rewrap``: the keys as a fresh process loads them."""
    database = harness.services.database
    return rewrap_values(database, load_or_create_keys(database, master_key).keyring, item_context)


def test_apps_running_through_a_rotation_and_a_rewrap_read_and_write_under_the_new_key(
    harness: Harness, other_replica: TestClient, master_key: LocalMasterKey
) -> None:
    client, headers = harness.client, harness.admin.headers
    create_secret(harness, "/dk/a", "a")

    assert rotate(harness.services.database, master_key) == 2

    # Writes after the rotation are sealed under the new key, by both apps.
    assert other_replica.put("/v1/secrets/dk/a", json={"value": "a2"}).is_success
    assert key_of(harness, "/dk/a") == 2
    create_secret(harness, "/dk/b", "b")
    assert key_of(harness, "/dk/b") == 2
    # Each reads what the other sealed under the key it learnt of by itself.
    assert client.get("/v1/secrets/dk/a", headers=headers).json()["value"] == "a2"
    assert other_replica.get("/v1/secrets/dk/b").json()["value"] == "b"
    assert other_replica.get("/v1/secrets/dk/a?version=1").json()["value"] == "a"

    # After a rewrap, the old versions too are under key 2, and still readable everywhere.
    assert rotate(harness.services.database, master_key) == 3
    assert rewrap(harness, master_key) == 3
    for reader, extra in ((client, headers), (other_replica, {})):
        assert reader.get("/v1/secrets/dk/a?version=1", headers=extra).json()["value"] == "a"
        answer = reader.post(
            "/v1/get-secret-value", json={"names": ["/dk/a", "/dk/b"]}, headers=extra
        )
        assert answer.json() == {"/dk/a": "a2", "/dk/b": "b"}
        assert reader.get("/v1/sys/ready").status_code == 200
    assert harness.services.keyring.newest_id == 3


def test_a_key_the_master_key_cannot_unwrap_makes_the_app_unready_and_its_writes_503(
    harness: Harness, master_key: LocalMasterKey
) -> None:
    client, headers = harness.client, harness.admin.headers
    create_secret(harness, "/dk/c", "c")
    # As after `keys change-master` then `keys rotate`, while this app runs with the old key.
    rotate(harness.services.database, LocalMasterKey(secrets.token_bytes(32)))

    ready = client.get("/v1/sys/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["keys"].startswith("unavailable: a newer data key")
    written = client.put("/v1/secrets/dk/c", json={"value": "c2"}, headers=headers)
    assert written.status_code == 503, written.text
    assert written.json()["error"] == "ServiceUnavailable"
    # What lies under the keys it holds stays readable; the failed write changed nothing.
    read = client.get("/v1/secrets/dk/c", headers=headers)
    assert read.json()["value"] == "c"
    assert read.json()["version"] == 1


def test_a_value_naming_a_key_that_does_not_exist_fails_as_tampering(
    harness: Harness, master_key: LocalMasterKey
) -> None:
    client = harness.client
    create_secret(harness, "/dk/d", "d")
    database = harness.services.database
    # Attack: someone with write access to the database makes a reader chase a key id above
    # every real one. It costs one look-up that finds nothing; the value does not open.
    with database.write() as connection:
        connection.execute(
            update(item_versions).values(ciphertext=seal(bytes(32), 77, b"forged", b"x"))
        )
    keyring = harness.services.keyring
    with database.read() as connection:
        forged = connection.execute(select(item_versions.c.ciphertext)).scalar_one()
    with pytest.raises(DecryptionError):
        keyring.decrypt(forged, b"x")
    assert keyring.current.key_ids == (1,)
    assert client.get("/v1/sys/ready").status_code == 200
