"""strongroom.bootstrap.recover on SQLite and PostgreSQL, in this process (the command as an
operator runs it: tests/e2e/test_admin_recovery.py)."""

from __future__ import annotations

from sqlalchemy import select

from strongroom.audit.writer import AuditWriter
from strongroom.bootstrap import recover
from strongroom.db.tables import audit_events
from tests.support.harness import Harness


def test_recover_mints_an_admin_key_and_puts_the_admin_role_back(harness: Harness) -> None:
    services = harness.services
    admin = harness.as_token(harness.admin.token)
    client = harness.client
    assert (
        client.put(
            "/v1/roles/admin/rules", json={"path": "/x/*", "capabilities": ["deny"]}, headers=admin
        ).status_code
        == 200
    )
    writer = AuditWriter(services.database, services.keys.audit)

    first = recover(services.database, services.keys, writer)
    assert (first.role_recreated, first.rules_restored) == (False, True)
    assert [access_id for _, access_id in first.other_admin_methods] == [harness.admin.access_id]
    token = harness.as_token(
        harness.login_key(first.credentials.access_id, first.credentials.access_key)
    )
    created = client.post("/v1/secrets", json={"name": "/x/y", "value": "v"}, headers=token)
    assert created.status_code == 201, created.text

    assert client.delete("/v1/roles/admin", headers=token).status_code == 204
    second = recover(services.database, services.keys, writer)
    assert (second.role_recreated, second.rules_restored) == (True, False)
    assert second.other_admin_methods == ()
    token = harness.as_token(
        harness.login_key(second.credentials.access_id, second.credentials.access_key)
    )
    assert client.get("/v1/secrets/x/y", headers=token).json()["value"] == "v"
    unchanged = recover(services.database, services.keys, writer)
    assert (unchanged.role_recreated, unchanged.rules_restored) == (False, False)
    with services.database.read() as connection:
        reasons = (
            connection.execute(
                select(audit_events.c.reason).where(
                    audit_events.c.action == "sys.bootstrap.recover"
                )
            )
            .scalars()
            .all()
        )
    assert reasons == ["admin rules restored", "admin role recreated", None]
