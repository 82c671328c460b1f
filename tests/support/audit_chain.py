"""The audit chain in tests: a fixed chain key for databases the tests set up themselves, and
verification in one snapshot as ``strongroom audit verify`` does it."""

from __future__ import annotations

from sqlalchemy import column, insert, table, text

from strongroom.audit.chain import GENESIS_HASH, ChainKey
from strongroom.audit.event import AuditEvent
from strongroom.audit.store import RECORD_COLUMNS, seal_anchor
from strongroom.audit.verification import VerifyResult, verify_chain
from strongroom.db.engine import Database
from strongroom.db.tables import UTCDateTime

# A server derives its key from the master key (db/keys.py); tests of the audit parts alone
# use this one.
TEST_CHAIN_KEY = ChainKey(bytes(range(32)))


def anchored(database: Database, key: ChainKey = TEST_CHAIN_KEY) -> Database:
    """``database`` (migrated) with its chain anchored under ``key``, as a server starts it."""
    seal_anchor(database, key)
    return database


def verify(database: Database, key: ChainKey = TEST_CHAIN_KEY) -> VerifyResult:
    with database.snapshot() as connection:
        return verify_chain(connection, key)


def write_chain_of_revision_0003(
    database: Database, key: ChainKey, events: list[AuditEvent], *, sealed_at: str
) -> None:
    """What a server of revision 0003 left in ``database`` (at schema 0003): ``events`` in the
    single keyed chain, its head, and the anchor sealed at 0 (a database created keyed)."""
    events_0003 = table(  # the events table as revision 0003 has it (no writer columns)
        "audit_events",
        column("seq"),
        column("time", UTCDateTime()),
        *(column(name) for name in RECORD_COLUMNS),
        column("prev_hash"),
        column("hash"),
    )
    prev = GENESIS_HASH
    with database.write() as connection:
        for seq, event in enumerate(events, start=1):
            record = event.record()
            link = key.link(prev, seq, record)
            connection.execute(
                insert(events_0003).values(
                    seq=seq,
                    time=event.time,
                    prev_hash=prev,
                    hash=link,
                    **{name: record[name] for name in RECORD_COLUMNS},
                )
            )
            prev = link
        connection.execute(
            text("UPDATE audit_chain_head SET seq = :n, hash = :h"), {"n": len(events), "h": prev}
        )
        connection.execute(
            text("UPDATE audit_anchor SET anchored_at = :at, seal = :s"),
            {"at": sealed_at, "s": key.seal(0, GENESIS_HASH, sealed_at)},
        )
