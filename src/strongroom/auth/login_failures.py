"""Counting failed logins, and the 429 they lead to (SPEC section 3).

Each failed login (401) counts against two keys, in the ``login_failures`` table that all
replicas share::

    ip:<source>                   per source                  limit: FailureLimits.source
    pair:<source>|<access ID>     per source and access ID    limit: FailureLimits.pair

Never per access ID alone. Access IDs are not secret, and an ``aws_iam`` login needs no
credential to fail, so a counter of the access ID alone let anyone lock an identity out from
anywhere by failing logins in its name (every genuine login then got 429). Now the limits only
ever stop the source that failed:

- ``pair`` (lower): one source failing for one identity (a guessing client, a workload with a
  stale key) is stopped for that identity, while other identities behind the same address
  (a NAT, a proxy's egress) go on logging in;
- ``source`` (higher): one source spraying many access IDs is stopped for all of them.

A source over either limit gets 429 with ``Retry-After`` before any work (no key check, no
STS call) and is not counted again. ``<source>`` is the request's source address
(:mod:`strongroom.kit.forwarded`), an IPv6 address counted by its /64: one host routinely
holds a whole /64, and counting its addresses one by one would give it 2^64 fresh sources.

What bounds the table: a source is refused once it reaches its limit, so it adds at most
``source + 1`` rows in one window however many access IDs it names; rows whose window has
ended are deleted (at most once a window per process). The table therefore holds about two
rows per failed login of the last window, whoever sends them.

Counting is best effort: a lost increment (two replicas racing) must never turn a 401 into a
500, so write conflicts are swallowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from strongroom.auth import login_repository
from strongroom.auth.login_repository import FailureCount
from strongroom.db.engine import Database
from strongroom.errors import RateLimitedError, StrongroomError

IPV6_SOURCE_PREFIX = 64
_SOURCE = "ip:"
_PAIR = "pair:"


@dataclass(frozen=True, slots=True)
class FailureLimits:
    """Failed logins tolerated in one ``window`` before 429."""

    pair: int
    source: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class FailureKeys:
    """The two counters one login attempt is judged by and, if it fails, adds to."""

    source: str
    pair: str

    def all(self) -> tuple[str, str]:
        return (self.source, self.pair)


def counting_source(source_ip: str) -> str:
    """The unit failures are counted by: the address, or for IPv6 its /64 network."""
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return source_ip  # "unknown", or a peer that is not an IP: counted as given
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_SOURCE_PREFIX), strict=False)
        return str(network)
    return str(address)


def failure_keys(source_ip: str, access_id: str) -> FailureKeys:
    """The keys of a login from ``source_ip`` naming ``access_id`` (see the module docstring)."""
    source = counting_source(source_ip)
    return FailureKeys(source=f"{_SOURCE}{source}", pair=f"{_PAIR}{source}|{access_id}")


def check_rate_limit(counts: Iterable[FailureCount], limits: FailureLimits, now: datetime) -> None:
    """RateLimitedError when one of ``counts`` (the attempt's keys) is at its limit."""
    for counted in counts:
        limit = limits.source if counted.key.startswith(_SOURCE) else limits.pair
        ends = counted.window_start + limits.window
        if counted.failures >= limit and ends > now:
            raise RateLimitedError(
                max(1, int((ends - now).total_seconds()) + 1),
                reason=f"too many failed logins for {counted.key}",
            )


class FailureCounter:
    """Records failed logins in the database (the writes; the reads are ``LoginReads``)."""

    def __init__(self, database: Database, limits: FailureLimits) -> None:
        self._db = database
        self._limits = limits
        self._next_sweep: datetime | None = None

    def _sweep_due(self, now: datetime) -> bool:
        if self._next_sweep is not None and now < self._next_sweep:
            return False
        self._next_sweep = now + self._limits.window
        return True

    def record(self, keys: FailureKeys, now: datetime, blocking: bool = True) -> None:
        """Count one failed login against ``keys``; sweep ended windows once a window.

        ``blocking=False``: give up (WriterBusyError) rather than wait for SQLite's writer.
        """
        window = self._limits.window
        sweep = self._sweep_due(now)
        swept = False
        try:
            with self._db.write(blocking=blocking) as connection:
                if sweep:
                    login_repository.delete_ended_windows(connection, now - window)
                for key in keys.all():
                    self._count(connection, key, now)
            swept = sweep
        except (IntegrityError, StrongroomError):
            # Best effort (see the module docstring): a lost increment, not a 500.
            return
        finally:
            if sweep and not swept:
                self._next_sweep = None  # rolled back (or not started): sweep next time

    def _count(self, connection: Connection, key: str, now: datetime) -> None:
        window_start = login_repository.failure_window_start(connection, key)
        if window_start is None:
            login_repository.start_failure_window(connection, key, now, new=True)
        elif window_start + self._limits.window <= now:
            login_repository.start_failure_window(connection, key, now, new=False)
        else:
            login_repository.add_failure(connection, key)
