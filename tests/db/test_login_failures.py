"""Failed-login counting (auth/login_failures.py): the keys, the limits, and the table's bound
on both databases. The attacks themselves run against a real server in
tests/e2e/test_login_abuse.py; these pin the arithmetic with a clock of the test's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from strongroom.auth.login_failures import (
    FailureCounter,
    FailureLimits,
    check_rate_limit,
    counting_source,
    failure_keys,
)
from strongroom.auth.login_reads import FailureCount, LoginReads
from strongroom.db.engine import Database
from strongroom.db.tables import login_failures
from strongroom.errors import RateLimitedError

NOW = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)
LIMITS = FailureLimits(pair=3, source=5, window=timedelta(seconds=60))
VICTIM = "p-victim000001"


@pytest.mark.parametrize(
    ("source_ip", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # One host routinely holds a whole /64: its addresses are one source.
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("unknown", "unknown"),
    ],
)
def test_sources_are_counted_by_address_and_ipv6_by_its_64(source_ip: str, counted_as: str) -> None:
    assert counting_source(source_ip) == counted_as
    keys = failure_keys(source_ip, VICTIM)
    assert keys.all() == (f"ip:{counted_as}", f"pair:{counted_as}|{VICTIM}")


def test_no_key_is_the_access_id_alone() -> None:
    """The lock-out: a key of the access ID alone is shared by every source naming it."""
    assert failure_keys("198.51.100.66", VICTIM) != failure_keys("203.0.113.7", VICTIM)
    assert not set(failure_keys("198.51.100.66", VICTIM).all()) & set(
        failure_keys("203.0.113.7", VICTIM).all()
    )


@pytest.mark.parametrize(
    ("key", "failures", "started", "limited"),
    [
        ("pair:203.0.113.7|p-x", 2, NOW, False),
        ("pair:203.0.113.7|p-x", 3, NOW, True),
        ("ip:203.0.113.7", 4, NOW, False),  # the source limit is the higher one
        ("ip:203.0.113.7", 5, NOW, True),
        ("ip:203.0.113.7", 50, NOW - timedelta(seconds=60), False),  # the window has ended
        ("ip:203.0.113.7", 50, NOW - timedelta(seconds=59), True),
    ],
)
def test_each_key_has_its_limit(key: str, failures: int, started: datetime, limited: bool) -> None:
    counts = [FailureCount(key=key, window_start=started, failures=failures)]
    if not limited:
        check_rate_limit(counts, LIMITS, NOW)
        return
    with pytest.raises(RateLimitedError) as raised:
        check_rate_limit(counts, LIMITS, NOW)
    assert raised.value.retry_after == int((started + LIMITS.window - NOW).total_seconds()) + 1
    assert key in str(raised.value.reason)


def _rows(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(login_failures)).scalar_one()
        )


def test_counts_grow_and_restart_with_the_window(database: Database) -> None:
    counter = FailureCounter(database, LIMITS)
    reads = LoginReads(database.engine)
    keys = failure_keys("203.0.113.7", VICTIM)
    try:
        for second in range(3):
            counter.record(keys, NOW + timedelta(seconds=second))
        counts = {c.key: (c.window_start, c.failures) for c in reads.failure_counts(keys.all())}
        assert counts == {keys.source: (NOW, 3), keys.pair: (NOW, 3)}
        later = NOW + LIMITS.window
        counter.record(keys, later)
        counts = {c.key: (c.window_start, c.failures) for c in reads.failure_counts(keys.all())}
        assert counts == {keys.source: (later, 1), keys.pair: (later, 1)}
    finally:
        reads.close()


def test_rows_of_ended_windows_are_deleted(database: Database) -> None:
    """Without it the table kept a row per source and access ID ever seen failing (a sprayer
    from ever new addresses grows it without end); now it holds about the last window's."""
    counter = FailureCounter(database, LIMITS)
    for n in range(20):
        counter.record(failure_keys(f"198.51.100.{n}", f"p-spray{n:07d}"), NOW)
    assert _rows(database) == 40
    # Within the window nothing is swept, however often failures come.
    counter.record(failure_keys("203.0.113.7", VICTIM), NOW + timedelta(seconds=30))
    assert _rows(database) == 42
    # The first failure after a window: the rows whose window ended go.
    counter.record(failure_keys("203.0.113.8", VICTIM), NOW + LIMITS.window)
    assert _rows(database) == 4
    # A new counter (another process, a restart) sweeps at its first failure.
    FailureCounter(database, LIMITS).record(
        failure_keys("203.0.113.9", VICTIM), NOW + 2 * LIMITS.window
    )
    assert _rows(database) == 2
