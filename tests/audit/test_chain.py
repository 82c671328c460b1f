"""The audit chain's formats (audit/chain.py): known-answer vectors, and what verification
reports for each way a stored chain can be wrong."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from sqlalchemy import Connection, text

from strongroom.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainKey,
    unkeyed_link,
    verify_links,
)
from strongroom.audit.store import append_events, read_anchor, seal_anchor, verify_chain
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


def test_known_answers() -> None:
    key = ChainKey(KEY)
    assert key.link(GENESIS_HASH, 1, RECORD) == KEYED_1
    assert key.link(KEYED_1, 2, DENIED) == KEYED_2
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
    # HKDF-SHA256 (RFC 5869), no salt (a block of zeros), the purpose as info, 32 bytes.
    prk = hmac.new(b"\0" * 32, KEY, hashlib.sha256).digest()
    okm = hmac.new(prk, AUDIT_CHAIN_KEY_PURPOSE + b"\x01", hashlib.sha256).hexdigest()
    assert okm == DERIVED


def test_a_key_never_shows_and_must_be_32_bytes() -> None:
    assert "hidden" in repr(ChainKey(KEY))
    assert KEY.hex() not in repr(ChainKey(KEY))
    with pytest.raises(ValueError, match="32 bytes"):
        ChainKey(b"short")


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
def chained(database: Database) -> Database:
    """Three keyed events (the audit tests' database is anchored at 0 with TEST_CHAIN_KEY)."""
    with database.write() as connection:
        append_events(connection, TEST_CHAIN_KEY, [event(1), event(2), event(3)])
    return database


def _sql(database: Database, statement: str, **params: object) -> None:
    with database.write() as connection:
        connection.execute(text(statement), params)


def test_an_intact_chain_verifies(chained: Database) -> None:
    result = verify(chained)
    assert (result.checked, result.head_seq, result.broken, result.unkeyed) == (3, 3, None, 0)
    assert result.anchored_at is not None


@pytest.mark.parametrize(
    ("statement", "problem", "seq"),
    [
        ("UPDATE audit_events SET reason = 'x' WHERE seq = 2", "does not match its link", 2),
        ("DELETE FROM audit_events WHERE seq = 2", "sequence gap", 3),
        ("DELETE FROM audit_events WHERE seq = 3", "missing at the end", 2),
        ("UPDATE audit_chain_head SET seq = 2", "follow the head", 3),
        ("UPDATE audit_anchor SET seq = 1", "does not match its seal", 1),
        ("DELETE FROM audit_anchor", "anchor of the keyed chain is missing", 0),
        ("UPDATE audit_anchor SET seal = NULL", "not anchored yet", 0),
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


def test_an_upgraded_chain_is_anchored_on_its_old_head(tmp_path: object) -> None:
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
            append_events(connection, TEST_CHAIN_KEY, [event(5)])
        result = verify(database)
        assert (result.broken, result.checked, result.unkeyed) == (None, 5, 4)
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
        append_events(connection, TEST_CHAIN_KEY, [event(1)])
    with database.snapshot() as connection:
        assert verify_chain(connection, None).broken is not None


def test_a_snapshot_writes_nothing(database: Database) -> None:
    with database.snapshot() as connection, pytest.raises(Exception, match=r"readonly|read-only"):
        connection.execute(text("DELETE FROM audit_anchor"))
    assert verify(database).broken is None


def test_a_server_of_an_older_version_cannot_append_unkeyed_links_after_the_upgrade(
    database: Database,
) -> None:
    """A rolling upgrade: a replica still running the previous version would extend the keyed
    chain with unkeyed links that no verify accepts. Its first append statement fails instead
    (its audited requests answer 503), because the head table it names is gone."""
    older_versions_first_statement = (
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
    )
    with pytest.raises(ServiceUnavailableError) as refused, database.write() as connection:
        connection.exec_driver_sql(older_versions_first_statement)
    assert "no such table: audit_head" in refused.value.reason
