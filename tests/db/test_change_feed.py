"""The change feed (db/change_feed.py): its trust window alone, then the feed on a real
PostgreSQL database (LISTEN/NOTIFY, heartbeat, losing its connection)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from sqlalchemy import text

from strongroom.auth.token_repository import bump_generation
from strongroom.db.change_feed import ChangeFeed, TrustWindow
from strongroom.db.engine import Database
from tests.support.databases import end_change_feeds

# -- the trust window (pure) ---------------------------------------------------------------


def test_nothing_is_trusted_before_a_heartbeat() -> None:
    window = TrustWindow(trust_seconds=0.75)
    assert window.trusted(0.0) is None
    window.heard("7", 0.0)  # a notification alone proves nothing missed before it
    assert window.trusted(0.0) is None


def test_a_heartbeat_is_trusted_for_the_trust_period_from_when_it_was_asked() -> None:
    window = TrustWindow(trust_seconds=0.75)
    window.proven(5, asked_at=10.0)
    assert window.trusted(10.0) == 5
    assert window.trusted(10.7) == 5
    # Counted from when the heartbeat was asked, not answered: a slow answer buys nothing.
    assert window.trusted(10.75) is None
    assert window.trusted(11.5) is None


def test_notifications_move_the_value_up_never_down() -> None:
    window = TrustWindow()
    window.proven(5, asked_at=0.0)
    window.heard("6", 0.1)
    assert window.trusted(0.2) == 6
    window.heard("4", 0.2)  # a late, stale notification
    assert window.trusted(0.3) == 6


def test_a_notification_heard_during_a_heartbeat_outranks_its_older_answer() -> None:
    window = TrustWindow()
    window.proven(5, asked_at=0.0)
    # The heartbeat is asked at 1.0; a change commits after its snapshot and its notification
    # is heard at 1.01, before the heartbeat's answer (5) arrives.
    window.heard("6", 1.01)
    window.proven(5, asked_at=1.0)
    assert window.trusted(1.1) == 6
    # A later heartbeat is the database's word again (a restore may set the counter back).
    window.proven(3, asked_at=2.0)
    assert window.trusted(2.1) == 3


def test_an_unreadable_notification_or_a_lost_listener_trusts_nothing() -> None:
    window = TrustWindow()
    window.proven(5, asked_at=0.0)
    window.heard("not a number", 0.1)
    assert window.trusted(0.2) is None
    window.proven(5, asked_at=0.3)
    assert window.trusted(0.4) == 5
    window.lost()
    assert window.trusted(0.4) is None


# -- the feed on PostgreSQL -------------------------------------------------------------------


def _bump(database: Database) -> int:
    with database.write() as connection:
        bump_generation(connection)
        return int(
            connection.execute(
                text("select value from counters where name = 'generation'")
            ).scalar_one()
        )


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _run(
    database: Database,
    scenario: Callable[[ChangeFeed], Coroutine[Any, Any, None]],
    **options: Any,
) -> None:
    async def main() -> None:
        feed = ChangeFeed(database.engine.url, timeout=5, **options)
        feed.start()
        try:
            await scenario(feed)
        finally:
            await feed.aclose()

    asyncio.run(main())


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.dialect != "postgresql":
        pytest.skip("the change feed is PostgreSQL's (LISTEN/NOTIFY)")
    return database


def test_the_feed_follows_commits_of_other_processes(postgres: Database) -> None:
    async def scenario(feed: ChangeFeed) -> None:
        await _until(lambda: feed.generation() == 0)
        # Another process's change: the notification carries it (the next heartbeat is a
        # minute away).
        bumped = await asyncio.to_thread(_bump, postgres)
        await _until(lambda: feed.generation() == bumped)

    _run(postgres, scenario, heartbeat_seconds=60, trust_seconds=120)


def test_a_notification_never_sent_is_caught_by_the_heartbeat(postgres: Database) -> None:
    async def scenario(feed: ChangeFeed) -> None:
        await _until(lambda: feed.generation() == 0)

        def silent_bump() -> None:  # as a writer that sends no NOTIFY would
            with postgres.write() as connection:
                connection.execute(
                    text("update counters set value = value + 1 where name = 'generation'")
                )

        await asyncio.to_thread(silent_bump)
        await _until(lambda: feed.generation() == 1)

    _run(postgres, scenario)


def test_this_process_knows_its_own_commit_at_once(postgres: Database) -> None:
    async def scenario(feed: ChangeFeed) -> None:
        postgres.counter_listeners.append(feed.committed)
        await _until(lambda: feed.generation() == 0)
        bumped = await asyncio.to_thread(_bump, postgres)
        # Known at once, without a loop pass for the notification (which, waiting unread on
        # the listening socket, makes generation() answer None: read the counter).
        assert feed.window.trusted(time.monotonic()) == bumped
        assert feed.generation() in (bumped, None)

    _run(postgres, scenario)


def test_a_lost_listener_trusts_nothing_until_it_is_back(postgres: Database) -> None:
    async def scenario(feed: ChangeFeed) -> None:
        await _until(lambda: feed.generation() == 0)
        end_change_feeds(postgres.engine)
        # Its socket has the termination waiting: the next look falls back at once.
        assert feed.generation() is None
        await asyncio.to_thread(_bump, postgres)
        await _until(lambda: feed.generation() == 1)  # reconnected, proven again

    _run(postgres, scenario)
