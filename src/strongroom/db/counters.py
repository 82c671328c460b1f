"""Named counters that tell a worker whether what it cached is still current.

Each counter stands for one kind of cached state, and every transaction that changes that state
bumps it (:func:`bump`), so that a worker compares one number instead of re-reading the state:

- :data:`GENERATION`: tokens, roles, rules, associations and auth methods (the callers and
  rule sets cached by ``auth/tokens.py``);
- :data:`SECRETS`: items and their versions (the rows cached by ``db/hot.py``).

Two counters rather than one, so that writing a secret does not make every worker load every
caller again, and a revocation does not empty the secret rows.

On PostgreSQL a bump also sends ``NOTIFY <channel>`` with the new value, delivered to every
replica's change feed when the transaction commits (``db/change_feed.py``), and never if it
rolls back. This process learns of its own bumps from ``Database.write`` once committed
(``Database.counter_listeners``), before its answer can leave.
"""

from __future__ import annotations

from sqlalchemy import Connection, update

from strongroom.db import driver
from strongroom.db.tables import counters

GENERATION = "generation"
SECRETS = "secrets"
# The notification channel of each counter (the payload is the counter's new value).
CHANNELS = {GENERATION: "strongroom_generation", SECRETS: "strongroom_secrets"}
# Set in a write transaction's ``Connection.info``: {counter: the value it moved it to}.
BUMPED = "strongroom.counters_bumped"


def bump(connection: Connection, name: str) -> int:
    """Move counter ``name`` on by one inside the changing transaction; its new value.

    Once per transaction: a transaction that changes several rows calls this for each (the
    repositories' writing functions do), and only the first call does anything. What was
    bumped is kept in ``connection.info``, which ``Database.write`` empties when its
    transaction begins and ends."""
    bumped: dict[str, int] = connection.info.setdefault(BUMPED, {})
    if name in bumped:
        return bumped[name]
    value = int(
        connection.execute(
            update(counters)
            .where(counters.c.name == name)
            .values(value=counters.c.value + 1)
            .returning(counters.c.value)
        ).scalar_one()
    )
    if not driver.is_sqlite(connection):
        db = driver.cursor(connection)
        db.execute("SELECT pg_notify(%s, %s)", (CHANNELS[name], str(value)))
        db.close()
    bumped[name] = value
    return value
