"""What the store and the audit trail promise (SPEC sections 6 and 7), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text, update

from strongroom.crypto import LocalMasterKey, item_context, key_id_of
from strongroom.db.keys import load_or_create_keys, rewrap_values, rotate
from strongroom.db.tables import audit_events, item_versions, items
from tests.api.test_flow import make_reader
from tests.support.audit_chain import verify
from tests.support.harness import Harness


def test_swapped_ciphertexts_fail_to_decrypt(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "/a", "value": "alpha"}, headers=headers)
    client.post("/v1/secrets", json={"name": "/b", "value": "bravo"}, headers=headers)
    client.put("/v1/secrets/b", json={"value": "bravo-2"}, headers=headers)
    database = harness.services.database
    with database.write() as connection:
        rows = {
            (r.name, r.version): (r.id, r.ciphertext)
            for r in connection.execute(
                select(
                    items.c.name,
                    item_versions.c.id,
                    item_versions.c.version,
                    item_versions.c.ciphertext,
                ).join(items, items.c.id == item_versions.c.item_id)
            )
        }
        # Move a's ciphertext into b's row, and b v1's into b v2's row.
        _, a_blob = rows[("/a", 1)]
        b1_id, b1_blob = rows[("/b", 1)]
        b2_id, _ = rows[("/b", 2)]
        connection.execute(
            update(item_versions).where(item_versions.c.id == b1_id).values(ciphertext=a_blob)
        )
        connection.execute(
            update(item_versions).where(item_versions.c.id == b2_id).values(ciphertext=b1_blob)
        )
    for path in ("/v1/secrets/b?version=1", "/v1/secrets/b"):
        response = client.get(path, headers=headers)
        assert response.status_code == 500
        assert "alpha" not in response.text
        assert "bravo" not in response.text
        assert response.json() == {"error": "InternalError", "message": "internal error"}
    assert client.get("/v1/secrets/a", headers=headers).json()["value"] == "alpha"


def test_database_files_hold_no_plaintext_values_tokens_or_keys(
    make_harness: object, tmp_path: Path
) -> None:
    harness = make_harness()  # type: ignore[operator]
    value = "plaintext-value-that-must-not-be-stored-0123456789"
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "/x/y", "value": value}, headers=headers)
    client.put("/v1/secrets/x/y", json={"value": value + "-v2"}, headers=headers)
    token = make_reader(harness, rules=[{"path": "/x/*", "capabilities": ["read"]}])
    assert client.get("/v1/secrets/x/y", headers=harness.as_token(token)).status_code == 200
    database = harness.services.database
    if database.dialect == "sqlite":
        db_path = Path(database.engine.url.database)
        blobs = b"".join(
            p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)
        )
    else:
        with database.read() as connection:
            dump = []
            for table in (
                "items",
                "item_versions",
                "tokens",
                "auth_methods",
                "audit_events",
                "data_keys",
                "login_failures",
                "role_rules",
            ):
                query = text(f"select * from {table}")  # noqa: S608 - fixed table names
                dump += [repr(tuple(r)) for r in connection.execute(query)]
        blobs = "\n".join(dump).encode()
    secrets_in_play = [value, token, harness.admin.token, harness.admin.access_key]
    for secret in secrets_in_play:
        assert secret.encode() not in blobs, secret[:6]


def test_every_request_is_audited_and_the_chain_verifies(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "/audited", "value": "v"}, headers=headers)
    client.get("/v1/secrets/audited", headers=headers)
    client.get("/v1/secrets/audited", headers={"Authorization": "Bearer t-bogus"})
    failed = client.post(
        "/v1/auth/login",
        json={
            "access_id": harness.admin.access_id,
            "access_type": "access_key",
            "access_key": "wrong",
        },
    )
    assert failed.status_code == 401
    assert failed.json() == {
        "error": "AuthenticationFailed",
        "message": "access authentication failed",
    }
    events = client.get("/v1/audit", params={"limit": 50}, headers=headers).json()["events"]
    actions = [(e["action"], e["outcome"]) for e in events]
    assert ("auth.login", "denied") in actions
    assert ("secret.read", "success") in actions
    assert ("secret.read", "denied") in actions
    assert ("secret.create", "success") in actions
    login_failure = next(
        e for e in events if e["action"] == "auth.login" and e["outcome"] == "denied"
    )
    assert login_failure["reason"] == "access key does not match"
    assert login_failure["source_ip"] == "203.0.113.7"
    for event in events:
        assert "wrong" not in str(event.get("reason"))
    filtered = client.get(
        "/v1/audit", params={"path": "/audited", "outcome": "success"}, headers=headers
    ).json()["events"]
    assert {e["action"] for e in filtered} == {"secret.create", "secret.read"}

    key = harness.services.keys.audit
    result = verify(harness.services.database, key)
    assert result.broken is None
    with harness.services.database.read() as connection:
        stored = connection.execute(select(func.count()).select_from(audit_events)).scalar_one()
    assert result.checked == stored >= 6  # every stored event, in whichever writer's chain

    # Tampering with any stored event breaks the chain at that event.
    with harness.services.database.write() as connection:
        connection.execute(
            update(audit_events).where(audit_events.c.seq == 3).values(reason="rewritten")
        )
    broken = verify(harness.services.database, key)
    assert broken.broken is not None
    assert broken.broken.seq == 3


def test_audit_failure_fails_closed(harness: Harness) -> None:
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "/fc", "value": "before"}, headers=headers)
    database = harness.services.database
    with database.write() as connection:
        connection.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
    read = client.get("/v1/secrets/fc", headers=headers)
    assert read.status_code == 503
    assert "before" not in read.text
    write = client.put("/v1/secrets/fc", json={"value": "after"}, headers=headers)
    assert write.status_code == 503
    with database.write() as connection:
        connection.execute(text("ALTER TABLE audit_events_gone RENAME TO audit_events"))
    # The failed write changed nothing.
    assert client.get("/v1/secrets/fc", headers=headers).json() == {
        **client.get("/v1/secrets/fc", headers=headers).json(),
        "value": "before",
        "version": 1,
    }


def test_key_rotation_and_rewrap(harness: Harness, master_key_b64: str) -> None:
    client, headers = harness.client, harness.admin.headers
    client.post("/v1/secrets", json={"name": "/k/old", "value": "old"}, headers=headers)
    services = harness.services
    master = LocalMasterKey.from_base64(master_key_b64)
    new_id = rotate(services.database, master)
    keys = load_or_create_keys(services.database, master)
    assert keys.keyring.newest_id == new_id == 2
    assert rewrap_values(services.database, keys.keyring, item_context) == 1
    with services.database.read() as connection:
        stored = connection.execute(
            select(item_versions.c.key_id, item_versions.c.ciphertext)
        ).one()
    assert stored.key_id == 2
    assert key_id_of(stored.ciphertext) == 2
    # The running app (its keys loaded before the rotation) picks key 2 up by itself, and a
    # restarted one loads it: the value is readable under the new key either way.
    assert client.get("/v1/secrets/k/old", headers=headers).json()["value"] == "old"
    restarted = LocalMasterKey.from_base64(master_key_b64)
    assert load_or_create_keys(services.database, restarted).keyring.newest_id == 2
