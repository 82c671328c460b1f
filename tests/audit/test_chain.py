"""The audit chains' formats (audit/chain.py): known-answer vectors, and what verification
reports for each way a stored chain can be wrong. (Several writers: test_writers.py.)"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, text

from strongroom.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainKey,
    entry_record,
    unkeyed_link,
    verify_links,
)
from strongroom.audit.store import Appender, read_anchor, seal_anchor
from strongroom.audit.verification import verify_chain
from strongroom.crypto import derive_key
from strongroom.db import migrate
from strongroom.db.engine import Database
from strongroom.db.keys import AUDIT_CHAIN_KEY_PURPOSE
from strongroom.errors import ServiceUnavailableError
from tests.audit.test_journal import event
from tests.support.audit_chain import TEST_CHAIN_KEY, verify

KEY = bytes(range(32))
RECORD = {
    "time": "2026-11-28T04:30:00.123456Z",
    "request_id": "req-0001",
    "source_ip": "203.0.113.7",
    "access_id": "p-abc123def456",
    "auth_method": "admin",
    "identity_arn": None,
    "token_digest": "d" * 64,
    "action": "secret.read",
    "path": "/app/db",
    "status": 200,
    "outcome": "success",
    "reason": None,
}
DENIED = {
    **RECORD,
    "request_id": "req-0002",
    "status": 403,
    "outcome": "denied",
    "reason": "read on item-rule /app/db not allowed",
}
# Computed by the unkeyed chain of revision 0002 (before the key): old chains verify with it.
UNKEYED_1 = "8365c132e314455d8602914790b4ddd6cb9021c3ee6c3149bd40dd9e158beb7e"
UNKEYED_2 = "bef84a7a726ae106816b960f9e100ac3481cdd568368f9a2ff2932118e52a67f"
KEYED_1 = "714610c38f88e71528b908354f97c79d2c1a28922f779f9ea28393df5ea05a20"
KEYED_2 = "0ca1e99698f1772a6bbfec5bad64b0eb664a9f72b8ddcd29ce5a0ea9448ad885"
SEAL = "e50d396f1ebc56dad6f7d194cd831b8dec229c9d8a6b57ef71fc463b6fb26fbc"
DERIVED = "25abf6ea1b434d1a944cdc9062784ce2e3d022e4404153dfd44c5877189ba434"
# Registry entry 2 (after a link of "a"s): writer 7 opens; then its first event, stored as 19.
OPENED = entry_record("open", 7, "2026-12-06T08:00:00.000000Z", "pid 42 on host")
ENTRY_2 = "1b7dc854e01479c04e0a289df2dae4d73f6728a7377cc7312b35f6484c66bfa8"
WRITER_7_1 = "04f0eb16d821d05493fbf7c5d697ac2ce9dd142b4fa78d2d0f58ff6948ab032d"


def test_known_answers() -> None:
    key = ChainKey(KEY)
    assert key.link(GENESIS_HASH, 1, RECORD) == KEYED_1
    assert key.link(KEYED_1, 2, DENIED) == KEYED_2
    assert key.entry(2, "a" * 64, OPENED) == ENTRY_2
    assert key.writer_link(7, 1, 19, ENTRY_2, RECORD) == WRITER_7_1
    assert key.seal(5, UNKEYED_1, "2026-12-02T10:00:00.000000Z") == SEAL
    assert unkeyed_link(GENESIS_HASH, 1, RECORD) == UNKEYED_1
    assert unkeyed_link(UNKEYED_1, 2, DENIED) == UNKEYED_2
    assert derive_key(KEY, AUDIT_CHAIN_KEY_PURPOSE).hex() == DERIVED


def test_the_formats_are_the_documented_ones() -> None:
    """The docstring's formulas, computed here with nothing but hmac and hashlib."""
    body = orjson.dumps(RECORD, option=orjson.OPT_SORT_KEYS)
    message = b"0" * 64 + b"\x00" + b"1" + b"\x00" + body
    keyed = hmac.new(KEY, b"strongroom:audit-link:v1\x00" + message, hashlib.sha256)
    assert keyed.hexdigest() == KEYED_1
    assert hashlib.sha256(message).hexdigest() == UNKEYED_1
    sealed = hmac.new(
        KEY,
        b"strongroom:audit-anchor:v1\x00" + b"5\x00" + UNKEYED_1.encode() + b"\x00"
        b"2026-12-02T10:00:00.000000Z",
        hashlib.sha256,
    )
    assert sealed.hexdigest() == SEAL
    entry = hmac.new(
        KEY,
        b"strongroom:audit-registry:v1\x00" + b"a" * 64 + b"\x002\x00"
        b'{"end_hash":null,"end_seq":null,"kind":"open","label":"pid 42 on host",'
        b'"time":"2026-12-06T08:00:00.000000Z","writer":7}',
        hashlib.sha256,
    )
    assert entry.hexdigest() == ENTRY_2
    first = hmac.new(
        KEY,
        b"strongroom:audit-link:v2\x00" + b"7\x001\x00" + ENTRY_2.encode() + b"\x0019\x00" + body,
        hashlib.sha256,
    )
    assert first.hexdigest() == WRITER_7_1
    # HKDF-SHA256 (RFC 5869), no salt (a block of zeros), the purpose as info, 32 bytes.
    prk = hmac.new(b"\0" * 32, KEY, hashlib.sha256).digest()
    okm = hmac.new(prk, AUDIT_CHAIN_KEY_PURPOSE + b"\x01", hashlib.sha256).hexdigest()
    assert okm == DERIVED


def test_a_key_never_shows_and_must_be_32_bytes() -> None:
    assert "hidden" in repr(ChainKey(KEY))
    assert KEY.hex() not in repr(ChainKey(KEY))
    with pytest.raises(ValueError, match="32 bytes"):
        ChainKey(b"short")


def test_each_link_covers_its_place() -> None:
    """An event moved to another writer, another position or another id has another link;
    so has an entry moved in the registry: links cannot be reused elsewhere."""
    key = ChainKey(KEY)
    assert (
        len(
            {
                key.writer_link(7, 1, 19, ENTRY_2, RECORD),
                key.writer_link(8, 1, 19, ENTRY_2, RECORD),
                key.writer_link(7, 2, 19, ENTRY_2, RECORD),
                key.writer_link(7, 1, 20, ENTRY_2, RECORD),
                key.link(ENTRY_2, 1, RECORD),
            }
        )
        == 5
    )
    assert key.entry(3, "a" * 64, OPENED) != ENTRY_2
    assert key.entry(2, "a" * 64, {**OPENED, "writer": 8}) != ENTRY_2


def test_another_key_breaks_every_link() -> None:
    rows = [(1, GENESIS_HASH, KEYED_1, RECORD), (2, KEYED_1, KEYED_2, DENIED)]
    assert verify_links(rows, ChainKey(KEY).link) == (2, None)
    assert verify_links(rows, ChainKey(bytes(32)).link) == (
        0,
        ChainBreak(1, "event content does not match its link"),
    )
    assert verify_links(rows, unkeyed_link) == (
        0,
        ChainBreak(1, "event content does not match its link"),
    )


# -- verify_chain against a stored chain ----------------------------------------------------


@pytest.fixture
def chained(store: Database) -> Database:
    """Three events, in one writer's chain, committed, then the writer closed."""
    appender = Appender(TEST_CHAIN_KEY)
    with store.write() as connection:
        appender.append(connection, [event(1), event(2), event(3)])
    return store


def _sql(database: Database, statement: str, **params: object) -> None:
    with database.write() as connection:
        connection.execute(text(statement), params)


def test_an_intact_chain_verifies(chained: Database) -> None:
    result = verify(chained)
    assert (result.checked, result.broken, result.unkeyed) == (3, None, 0)
    assert (result.writers, result.open_writers, result.entries) == (2, 1, 2)  # legacy, ours
    assert result.anchored_at is not None


@pytest.mark.parametrize(
    ("statement", "problem", "seq"),
    [
        ("UPDATE audit_events SET reason = 'x' WHERE seq = 2", "does not match its link", 2),
        ("DELETE FROM audit_events WHERE seq = 2", "sequence gap", 3),
        ("DELETE FROM audit_events WHERE seq = 3", "missing at the end", 2),
        ("UPDATE audit_heads SET seq = 2 WHERE id > 1", "follow the head", 3),
        ("UPDATE audit_events SET seq = seq + 10 WHERE seq = 3", "does not match its link", 13),
        ("UPDATE audit_anchor SET seq = 1", "does not match its seal", 1),
        ("DELETE FROM audit_anchor", "anchor of the keyed chain is missing", 0),
        ("UPDATE audit_anchor SET seal = NULL", "not anchored yet", 0),
        ("UPDATE audit_registry SET label = 'x' WHERE kind = 'open'", "registry entry 2", 0),
        ("DELETE FROM audit_registry WHERE seq = 1", "registry entry 2: sequence gap", 0),
        ("DELETE FROM audit_registry WHERE seq = 2", "missing at the end of the registry", 0),
        ("UPDATE audit_heads SET seq = 1 WHERE id = 0", "follow the head of the registry", 0),
        ("DELETE FROM audit_heads WHERE id = 0", "head of the writers' registry is missing", 0),
        ("DELETE FROM audit_heads WHERE id > 1", "head of writer", 0),
        ("UPDATE audit_heads SET closed = true WHERE id > 1", "marked closed", 0),
    ],
)
def test_each_way_of_rewriting_the_store_is_reported(
    chained: Database, statement: str, problem: str, seq: int
) -> None:
    _sql(chained, statement)
    broken = verify(chained).broken
    assert broken is not None
    assert problem in broken.problem
    assert broken.seq == seq


def _unkeyed_chain(connection: Connection, count: int) -> str:
    """What revision 0002 wrote: ``count`` events with unkeyed links."""
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        record = event(seq).record()
        link = unkeyed_link(prev, seq, record)
        connection.execute(
            text(
                "INSERT INTO audit_events (seq, time, request_id, source_ip, action, status, "
                "outcome, access_id, token_digest, path, prev_hash, hash) VALUES (:seq, :time, "
                ":request_id, :source_ip, :action, :status, :outcome, :access_id, "
                ":token_digest, :path, :prev, :hash)"
            ),
            {
                **{k: v for k, v in record.items() if k != "time"},
                "seq": seq,
                "time": event(seq).time.replace(tzinfo=None).isoformat(" "),
                "prev": prev,
                "hash": link,
            },
        )
        prev = link
    connection.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": count, "h": prev})
    return prev


def test_an_upgraded_chain_is_anchored_on_its_old_head(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path}/old.db")
    try:
        migrate.upgrade(database, "0002")
        with database.write() as connection:
            old_head = _unkeyed_chain(connection, 4)
        migrate.upgrade(database)
        with database.read() as connection:
            anchor = read_anchor(connection)
        assert anchor is not None
        assert (anchor.seq, anchor.hash, anchor.seal) == (4, old_head, None)
        assert verify(database).broken is not None  # not anchored yet: nothing proves it
        assert seal_anchor(database, TEST_CHAIN_KEY) is not None
        assert seal_anchor(database, TEST_CHAIN_KEY) is None  # once
        with database.write() as connection:
            Appender(TEST_CHAIN_KEY).append(connection, [event(5)])
        result = verify(database)
        assert (result.broken, result.checked, result.unkeyed) == (None, 5, 4)
        assert (result.writers, result.entries) == (2, 2)  # the old chain and a new writer
        # The old part cannot be changed any more, even with its unkeyed links recomputed.
        with database.write() as connection:
            connection.execute(text("UPDATE audit_events SET source_ip = 'x' WHERE seq = 4"))
            row = connection.execute(text("SELECT * FROM audit_events WHERE seq = 4")).one()
            record = {**event(4).record(), "source_ip": "x"}
            relinked = unkeyed_link(row.prev_hash, 4, record)
            connection.execute(
                text("UPDATE audit_events SET hash = :h WHERE seq = 4"), {"h": relinked}
            )
            connection.execute(
                text("UPDATE audit_events SET prev_hash = :h WHERE seq = 5"), {"h": relinked}
            )
        broken = verify(database).broken
        assert broken is not None
        assert broken.problem == "the unkeyed chain does not end on its anchor"
    finally:
        database.dispose()


def test_a_database_without_keys_verifies_only_while_empty(database: Database) -> None:
    with database.snapshot() as connection:
        assert verify_chain(connection, None).broken is None
    with database.write() as connection:
        Appender(TEST_CHAIN_KEY).append(connection, [event(1)])
    with database.snapshot() as connection:
        assert verify_chain(connection, None).broken is not None


def test_a_new_database_verifies_before_and_after_its_first_start(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path}/new.db")
    try:
        migrate.upgrade(database)
        assert verify(database).broken is None  # nothing written, nothing anchored yet
        with pytest.raises(ServiceUnavailableError), database.write() as connection:
            # Appending before the registry is started (seal_anchor) fails closed.
            Appender(TEST_CHAIN_KEY).append(connection, [event(1)])
        seal_anchor(database, TEST_CHAIN_KEY)
        result = verify(database)
        assert (result.broken, result.writers, result.entries) == (None, 1, 1)
    finally:
        database.dispose()


def test_a_snapshot_writes_nothing(database: Database) -> None:
    with database.snapshot() as connection, pytest.raises(Exception, match=r"readonly|read-only"):
        connection.execute(text("DELETE FROM audit_anchor"))
    assert verify(database).broken is None


@pytest.mark.parametrize(
    "older_versions_first_statement",
    [
        # Up to revision 0002: unkeyed links no verify accepts.
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
        # Revision 0003: the single chain, which no one verifies past the registry's legacy end.
        "UPDATE audit_chain_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
    ],
)
def test_a_server_of_an_older_version_cannot_append_after_the_upgrade(
    database: Database, older_versions_first_statement: str
) -> None:
    """A rolling upgrade: a replica still running a previous version would extend a chain that
    no verify accepts any more. Its first append statement fails instead (its audited requests
    answer 503), because the head table it names is gone."""
    with pytest.raises(ServiceUnavailableError) as refused, database.write() as connection:
        connection.exec_driver_sql(older_versions_first_statement)
    assert "no such table: audit_" in refused.value.reason
