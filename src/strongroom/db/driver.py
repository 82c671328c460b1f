"""Statements run through the DB-API driver inside a SQLAlchemy transaction.

For the few statements on a hot path (every login, every audit commit), SQLAlchemy's execution
machinery costs several times the statement itself; on SQLite that time is spent holding the
one write lock that every worker's audit commits wait for. These helpers run plain SQL on the
transaction's own driver connection, storing values exactly as the SQLAlchemy column types of
``db/tables.py`` do, so that SQLAlchemy reads them back unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

# What the drivers raise where SQLAlchemy would raise IntegrityError / OperationalError.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    IntegrityError,
    sqlite3.IntegrityError,
    psycopg.IntegrityError,
)
DRIVER_OPERATIONAL_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
)


def is_sqlite(connection: Connection) -> bool:
    return connection.dialect.name == "sqlite"


def cursor(connection: Connection) -> Any:
    """A driver cursor on the connection (and in the transaction) of ``connection``."""
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def sql(connection: Connection, statement: str) -> str:
    """``statement`` written with ``?`` placeholders, in the driver's placeholder style."""
    return statement if is_sqlite(connection) else statement.replace("?", "%s")


def stored_time(connection: Connection, moment: datetime) -> Any:
    """A ``UTCDateTime`` value: naive UTC text on SQLite, an aware datetime on PostgreSQL."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored; use UTC-aware ones")
    moment = moment.astimezone(UTC)
    if is_sqlite(connection):
        return moment.replace(tzinfo=None).isoformat(" ", "microseconds")
    return moment


def loaded_time(value: Any) -> datetime:
    """A ``UTCDateTime`` column as read through the driver: always a UTC-aware datetime."""
    if isinstance(value, str):  # SQLite keeps naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if not isinstance(value, datetime):
        raise TypeError(f"not a stored time: {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def stored_json(connection: Connection, value: Mapping[str, Any]) -> Any:
    """A ``JSON`` column value: JSON text on SQLite, a psycopg ``Json`` on PostgreSQL."""
    return json.dumps(dict(value)) if is_sqlite(connection) else Json(dict(value))


def loaded_json(value: Any) -> Any:
    """A ``JSON`` column as read through the driver (text on SQLite, parsed on PostgreSQL)."""
    return json.loads(value) if isinstance(value, str | bytes) else value
