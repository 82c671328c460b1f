"""The audit journal in the app (SQLite, as a server runs it): reads are answered without the
SQLite write lock, fail closed when the journal cannot be written, and every event is chained,
including those a process left behind when it died."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from strongroom.audit.journal import AuditJournal
from strongroom.crypto import LocalMasterKey
from strongroom.serving.placement import Placement
from tests.audit.test_journal import chained_request_ids, event, write_orphan
from tests.support.audit_chain import verify
from tests.support.concurrency import HeldLock
from tests.support.harness import Harness, running_app


@pytest.fixture
def journaled(make_harness: Callable[..., Harness], database_url: str) -> Harness:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL commits reads' events straight to the chain: there is no journal")
    return make_harness(placement=Placement.in_process(audit_journal=True))


def journal_of(harness: Harness) -> AuditJournal:
    journal = harness.services.writer.journal
    assert journal is not None
    return journal


def test_reads_are_answered_while_a_login_holds_the_write_lock(journaled: Harness) -> None:
    client, headers = journaled.client, journaled.admin.headers
    value = "journal-must-not-hold-this-value"
    client.post("/v1/secrets", json={"name": "/j/a", "value": value}, headers=headers)
    database = journaled.services.database
    with HeldLock(database):
        read = client.get("/v1/secrets/j/a", headers=headers)
        denied = client.get("/v1/secrets/j/a", headers={"Authorization": "Bearer t-bogus"})
        assert (read.status_code, denied.status_code) == (200, 401)
        ids = {read.headers["x-request-id"], denied.headers["x-request-id"]}
        assert not ids & set(chained_request_ids(database))  # journaled, not yet chained
        held = journal_of(journaled).path.read_bytes()
    assert all(request_id.encode() in held for request_id in ids)
    # Neither the value nor a token is in the file: a token only as its keyed digest.
    assert value.encode() not in held
    assert journaled.admin.token.encode() not in held
    assert b"t-bogus" not in held
    events = client.get("/v1/audit", params={"limit": 50}, headers=headers).json()["events"]
    assert ids <= {e["request_id"] for e in events}
    assert verify(database, journaled.services.keys.audit).broken is None


def test_a_journal_that_cannot_be_written_answers_503(journaled: Harness) -> None:
    client, headers = journaled.client, journaled.admin.headers
    client.post("/v1/secrets", json={"name": "/j/b", "value": "kept-out"}, headers=headers)
    journal = journal_of(journaled)
    read_only = os.open(journal.path, os.O_RDONLY)  # writes now fail with EBADF
    os.dup2(read_only, journal._descriptor)
    os.close(read_only)
    read = client.get("/v1/secrets/j/b", headers=headers)
    assert read.status_code == 503
    assert "kept-out" not in read.text
    assert read.json()["error"] == "ServiceUnavailable"


def test_events_a_dead_process_journaled_are_chained_when_the_app_starts(
    journaled: Harness, master_key: LocalMasterKey
) -> None:
    journal = journal_of(journaled)
    orphan = write_orphan(journal.directory, [event(1), event(2)])
    assert orphan.path.exists()
    # A new worker on the same database (as uvicorn starts one for a worker that died).
    with running_app(
        journaled.services.settings,
        master_key=master_key,
        placement=Placement.in_process(audit_journal=True),
    ) as again:
        assert not orphan.path.exists()
        assert journal.path.exists()  # the first app's own journal: alive, left alone
        chained = chained_request_ids(again.services.database)
        assert {"req-0001", "req-0002"} <= set(chained)
