"""The audit chain in tests: a fixed chain key for databases the tests set up themselves, and
verification in one snapshot as ``strongroom audit verify`` does it."""

from __future__ import annotations

from strongroom.audit.chain import ChainKey
from strongroom.audit.store import seal_anchor
from strongroom.audit.verification import VerifyResult, verify_chain
from strongroom.db.engine import Database

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
