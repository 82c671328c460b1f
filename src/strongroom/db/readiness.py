"""What ``GET /v1/sys/ready`` asks of the database, so that the route holds no SQL."""

from __future__ import annotations

from sqlalchemy import select

from strongroom.db.engine import Database
from strongroom.db.tables import counters


def check_database(database: Database) -> None:
    """Read one row of a table the migrations create; raise whatever the database raises
    when it does not answer or has no schema yet."""
    with database.read() as connection:
        connection.execute(select(counters.c.value).limit(1)).all()
