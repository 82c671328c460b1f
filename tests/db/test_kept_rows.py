"""Item-version rows kept in memory on PostgreSQL (db/hot.KeptVersionRows), with a real change
feed on a real database: a kept row is answered without the database only while the feed
vouches that no item changed; a change through the repository, a change that sends no
notification, and a lost listener each make the next reads read the row again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from strongroom.db.change_feed import ChangeFeed
from strongroom.db.counters import SECRETS
from strongroom.db.engine import Database
from strongroom.db.hot import HotReads, hot_reads
from strongroom.secrets import repository
from tests.support.databases import end_change_feeds

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.dialect != "postgresql":
        pytest.skip("rows are kept on PostgreSQL only (SQLite reads them inline)")
    return database


def _create(database: Database, name: str, ciphertext: bytes) -> int:
    with database.write() as connection:
        item_id = repository.insert_item(connection, name=name, description="", tags=[], now=NOW)
        repository.insert_version(
            connection,
            item_id=item_id,
            version=1,
            ciphertext=ciphertext,
            key_id=1,
            created_by="test",
            now=NOW,
        )
    return item_id


def _add_version(database: Database, item_id: int, version: int, ciphertext: bytes) -> None:
    """A new version through the repository: bumps the secrets counter and notifies."""
    with database.write() as connection:
        repository.set_latest_version(connection, item_id, version, NOW)
        repository.insert_version(
            connection,
            item_id=item_id,
            version=version,
            ciphertext=ciphertext,
            key_id=1,
            created_by="test",
            now=NOW,
        )


def _overwrite_behind_its_back(database: Database, item_id: int, ciphertext: bytes) -> None:
    """Change the stored row without bumping the counter: only a read of the database sees
    it, so a read that answers the old bytes was answered from memory."""
    with database.write() as connection:
        connection.execute(
            text("UPDATE item_versions SET ciphertext = :c WHERE item_id = :i"),
            {"c": ciphertext, "i": item_id},
        )


async def _ciphertext(hot: HotReads, name: str) -> bytes:
    row = await hot.version_row(name, None)
    assert row is not None
    return row[3]


async def _until(condition: Callable[[], Coroutine[Any, Any, bool]]) -> None:
    deadline = time.monotonic() + 10
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _until_read(hot: HotReads, name: str, expected: bytes) -> None:
    """Reads of ``name`` answer ``expected`` within ten seconds."""

    async def read_expected() -> bool:
        return await _ciphertext(hot, name) == expected

    await _until(read_expected)


def _run(
    database: Database,
    scenario: Callable[[ChangeFeed, HotReads], Coroutine[Any, Any, None]],
    *,
    keep_bytes: int = 1 << 20,
    **feed_options: Any,
) -> None:
    async def main() -> None:
        feed = ChangeFeed(database.engine.url, timeout=5, **feed_options)
        database.counter_listeners.append(feed.committed)
        hot = hot_reads(database.engine, timeout=5, feed=feed, keep_bytes=keep_bytes)
        feed.start()
        try:
            await _until(lambda: _vouched(feed))
            await scenario(feed, hot)
        finally:
            await hot.aclose()
            await feed.aclose()

    asyncio.run(main())


async def _vouched(feed: ChangeFeed) -> bool:
    return feed.value(SECRETS) is not None


def test_a_kept_row_is_answered_from_memory_until_an_item_changes(postgres: Database) -> None:
    item_id = _create(postgres, "/app/db", b"v1")

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        assert await _ciphertext(hot, "/app/db") == b"v1"  # read, and kept
        _overwrite_behind_its_back(postgres, item_id, b"changed unannounced")
        assert await _ciphertext(hot, "/app/db") == b"v1"  # from memory: no round trip
        _add_version(postgres, item_id, 2, b"v2")  # announced: every kept row goes
        assert await _ciphertext(hot, "/app/db") == b"v2"

    # No heartbeat during the test: only the change's own announcement can drop the row.
    _run(postgres, scenario, heartbeat_seconds=60, trust_seconds=120)


def test_a_change_made_on_another_replica_reaches_the_kept_rows_by_its_notification(
    postgres: Database,
) -> None:
    item_id = _create(postgres, "/app/db", b"v1")

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        assert await _ciphertext(hot, "/app/db") == b"v1"
        # Another replica's process: its commit reaches this one only as a notification.
        other = Database.from_url(postgres.engine.url.render_as_string(hide_password=False))
        try:
            await asyncio.to_thread(_add_version, other, item_id, 2, b"v2")
        finally:
            other.dispose()

        await _until_read(hot, "/app/db", b"v2")

    _run(postgres, scenario, heartbeat_seconds=60, trust_seconds=120)


def test_a_change_that_sends_no_notification_is_caught_by_the_heartbeat(
    postgres: Database,
) -> None:
    item_id = _create(postgres, "/app/db", b"v1")

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        assert await _ciphertext(hot, "/app/db") == b"v1"
        started = time.monotonic()
        with postgres.write() as connection:  # as a writer that sends no NOTIFY would
            connection.execute(
                text("UPDATE item_versions SET ciphertext = 'v2' WHERE item_id = :i"),
                {"i": item_id},
            )
            connection.execute(text("UPDATE counters SET value = value + 1 WHERE name = 'secrets'"))

        await _until_read(hot, "/app/db", b"v2")
        # Within the trust period (SPEC section 11: at the latest within one second).
        assert time.monotonic() - started < 1.0

    _run(postgres, scenario)


def test_no_kept_row_is_answered_while_the_feed_cannot_vouch(postgres: Database) -> None:
    item_id = _create(postgres, "/app/db", b"v1")

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        assert await _ciphertext(hot, "/app/db") == b"v1"
        end_change_feeds(postgres.engine)
        _overwrite_behind_its_back(postgres, item_id, b"v2")
        # The listener is gone: whatever was kept is not trusted, the row is read.
        assert await _ciphertext(hot, "/app/db") == b"v2"

    _run(postgres, scenario, heartbeat_seconds=60, trust_seconds=120)


def test_kept_rows_stay_within_their_bytes_least_recently_read_dropped_first(
    postgres: Database,
) -> None:
    ids = {name: _create(postgres, name, name.encode() * 100) for name in ("/a", "/b", "/c")}

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        for name in ("/a", "/b"):
            await _ciphertext(hot, name)
        await _ciphertext(hot, "/a")  # /a read last: /b is the least recently read
        await _ciphertext(hot, "/c")  # room for two rows: /b goes
        for item_id in ids.values():
            _overwrite_behind_its_back(postgres, item_id, b"new")
        assert await _ciphertext(hot, "/a") != b"new"  # kept
        assert await _ciphertext(hot, "/c") != b"new"  # kept
        assert await _ciphertext(hot, "/b") == b"new"  # dropped: read again

    # Two rows of ~700 bytes each (ciphertext, name, bookkeeping), not three.
    _run(postgres, scenario, keep_bytes=1500, heartbeat_seconds=60, trust_seconds=120)


def test_with_no_bytes_to_keep_every_read_reads_its_row(postgres: Database) -> None:
    item_id = _create(postgres, "/app/db", b"v1")

    async def scenario(feed: ChangeFeed, hot: HotReads) -> None:
        assert await _ciphertext(hot, "/app/db") == b"v1"
        _overwrite_behind_its_back(postgres, item_id, b"v2")
        assert await _ciphertext(hot, "/app/db") == b"v2"

    _run(postgres, scenario, keep_bytes=0, heartbeat_seconds=60, trust_seconds=120)
