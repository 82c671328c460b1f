"""The login's driver-level reads (auth/login_reads.py) on both databases: they return what
SQLAlchemy would, see every commit at once, cannot write, and survive a dropped connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from strongroom.auth.login_reads import LoginReads
from strongroom.db.engine import Database
from strongroom.db.held import HeldConnection
from strongroom.db.tables import auth_methods, login_failures, login_replay
from strongroom.errors import ServiceUnavailableError

NOW = datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=UTC)
CONFIG = {
    "sts_url": "https://sts.amazonaws.com",
    "bound_aws_account_id": ["123456789012"],
    "bound_role_name": ["app-*"],
    "jwt_ttl": 30,
    "bound_ips": [],
    "note": "ünïcode ✓",
}


@pytest.fixture
def reads(database: Database) -> Iterator[LoginReads]:
    reads = LoginReads(database.engine)
    yield reads
    reads.close()


def _add_method(database: Database, access_id: str = "p-abcdef123456") -> int:
    with database.write() as connection:
        result = connection.execute(
            auth_methods.insert().values(
                access_id=access_id,
                name="web-iam",
                type="aws_iam",
                description="",
                config=CONFIG,
                access_key_digest=None,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])


def test_auth_method_matches_what_sqlalchemy_reads(database: Database, reads: LoginReads) -> None:
    method_id = _add_method(database)
    record = reads.auth_method("p-abcdef123456")
    assert record is not None
    with database.read() as connection:
        row = connection.execute(select(auth_methods).where(auth_methods.c.id == method_id)).one()
    assert (record.id, record.access_id, record.name, record.type) == (
        row.id,
        row.access_id,
        row.name,
        row.type,
    )
    assert record.config == dict(row.config) == CONFIG
    assert record.access_key_digest is None


def test_unknown_access_id_is_none(database: Database, reads: LoginReads) -> None:
    _add_method(database)
    assert reads.auth_method("p-000000000000") is None
    # Bound, never spliced into the statement (SQL injection through the access ID).
    assert reads.auth_method("x' OR '1'='1") is None


def test_failure_counts_are_utc_times_as_stored(database: Database, reads: LoginReads) -> None:
    assert reads.failure_counts(["ip:10.0.0.1", "pair:10.0.0.1|p-abcdef123456"]) == []
    with database.write() as connection:
        connection.execute(
            login_failures.insert().values(key="ip:10.0.0.1", window_start=NOW, count=3)
        )
        connection.execute(
            login_failures.insert().values(
                key="pair:10.0.0.2|p-abcdef123456", window_start=NOW - timedelta(hours=1), count=9
            )
        )
    counts = reads.failure_counts(["ip:10.0.0.1", "pair:10.0.0.1|p-abcdef123456"])
    assert [(c.key, c.window_start, c.failures) for c in counts] == [("ip:10.0.0.1", NOW, 3)]
    assert counts[0].window_start.utcoffset() == timedelta(0)
    assert reads.failure_counts([]) == []


def test_every_read_sees_the_latest_commit(database: Database, reads: LoginReads) -> None:
    """Autocommit: no read runs inside an old snapshot, or a replay could slip through."""
    assert reads.signature_spent("a" * 64) is False
    with database.write() as connection:
        connection.execute(login_replay.insert().values(signature_digest="a" * 64, expires_at=NOW))
    assert reads.signature_spent("a" * 64) is True
    assert reads.signature_spent("b" * 64) is False
    assert reads.auth_method("p-abcdef123456") is None
    _add_method(database)
    assert reads.auth_method("p-abcdef123456") is not None


def test_the_held_connection_cannot_write(database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL statements are SELECTs written in the code; SQLite enforces it")
    held = HeldConnection(database.engine, purpose="test read")
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        held._connect().execute("DELETE FROM login_replay")
    held.close()


def test_reads_reconnect_after_losing_their_connection(
    database: Database, reads: LoginReads
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("a connection to a local SQLite file does not drop")
    _add_method(database)
    assert reads.auth_method("p-abcdef123456") is not None
    # A server restart or failover, as the held connection sees it: its backend is gone.
    with database.engine.connect() as connection:
        connection.execute(
            text(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid()"
            )
        )
    assert reads.auth_method("p-abcdef123456") is not None
    assert reads.signature_spent("c" * 64) is False


def test_an_unreachable_database_is_a_503(tmp_path: object) -> None:
    database = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
    reads = LoginReads(database.engine)
    with pytest.raises(ServiceUnavailableError) as raised:
        reads.auth_method("p-abcdef123456")
    assert raised.value.status == 503
    assert "login read failed" in raised.value.reason
    reads.close()
    database.dispose()
