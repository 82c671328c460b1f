"""What ``strongroom server`` checks and prepares before it forks anything (SPEC section 1).

Every problem found here is a :class:`StartupError` whose message is one line that says what
is wrong and what to do; the command prints it and exits 1, with no traceback. A database that
does not answer is tried again first, for ``DB_START_WAIT_SECONDS`` (each attempt logged): in
a deployment the database often starts at the same time as the server.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from strongroom.config import Settings, unknown_variables
from strongroom.kit.private_files import private_directory

log = structlog.get_logger("strongroom.serving")

RETRY_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 5


class StartupError(Exception):
    """A start-up problem; ``str()`` is the one line to print."""


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_settings() -> Settings:
    """The settings from the environment; StartupError naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "STRONGROOM_" + "_".join(str(part) for part in error["loc"][:1]).upper()
            problems.append(f"{name}: {one_line(error['msg'])}")
        raise StartupError("invalid configuration: " + "; ".join(problems)) from None


def warn_unknown_variables(environ: Mapping[str, str], warn: Callable[[str], None]) -> None:
    for variable, close in unknown_variables(environ):
        hint = f" (did you mean {close}?)" if close else ""
        warn(f"unknown setting {variable} is ignored{hint}")


def database_label(database_url: str) -> str:
    """The database URL without its password, for the start-up line and messages."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def check_data_folder(database_url: str) -> None:
    """SQLite: the database's folder exists (made 0700 if missing) and takes new files."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise StartupError(
            f"STRONGROOM_DATABASE_URL is not a database URL: {database_url!r}"
        ) from None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    folder = Path(url.database).resolve().parent
    try:
        # Missing folders are made 0700 whatever the umask (kit/private_files.py): the
        # database, its WAL and the audit journals go in it.
        private_directory(folder)
        # Creating a file is the test that holds for root and on read-only mounts alike.
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
        database = Path(url.database)
        if database.exists():
            with database.open("r+b"):
                pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"the data folder {folder} is not writable ({reason}): the server keeps its SQLite "
            "database, its WAL and its audit journals there"
        ) from None


def check_audit_file(audit_file: Path | None) -> None:
    """``AUDIT_FILE``, if set, opens for appending as the workers will open it: created 0600
    (its folder 0700) if missing; a symbolic link, anything but a regular file, or a file of
    another user is refused (``AuditFileSink``). Refused at start, in one line, rather than by
    every worker that the supervisor would start again and again."""
    if audit_file is None:
        return
    from strongroom.audit.writer import AuditFileSink
    from strongroom.errors import ConfigurationError

    try:
        AuditFileSink(audit_file).close()
    except ConfigurationError as exc:
        raise StartupError(one_line(str(exc))) from None


def wait_for_database(database_url: str, wait_seconds: float) -> None:
    """Connect once; retry for ``wait_seconds`` while the database does not answer."""
    label = database_label(database_url)
    deadline = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            _probe(database_url)
            return
        except Exception as exc:  # whatever the driver raises: reported, then retried
            error = one_line(str(exc)) or type(exc).__name__
            if time.monotonic() + RETRY_SECONDS > deadline:
                tried = f" (tried {attempt} times in {wait_seconds:g} s)" if attempt > 1 else ""
                raise StartupError(f"cannot reach the database {label}{tried}: {error}") from None
            log.warning("database_unreachable", database=label, attempt=attempt, error=error)
        time.sleep(RETRY_SECONDS)


def _probe(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        import psycopg

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS) as connection:
            connection.execute("SELECT 1")
        return
    from strongroom.db.engine import Database

    database = Database.from_url(database_url)
    try:
        with database.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        database.dispose()


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket the workers will share; StartupError if it cannot be had."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        listener.listen(backlog)
    except OSError as exc:
        listener.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener
