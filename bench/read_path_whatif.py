"""What a Strongroom secret read would cost with the changes proposed from ``read_path.py``.

    .venv/bin/python bench/read_path_whatif.py [--iterations 4000]

Builds the app in-process as ``read_path_steps.py`` does, then applies the proposed changes one
after another, by patching objects in this process only (src/ is not modified), and times the
whole ASGI request (no HTTP) after each: one request at a time and 16 at once, wall and CPU µs.
Every variant is checked to still answer 200 with the secret's value.

1. the secrets router is matched first (FastAPI scans every earlier route per request);
2. the read endpoint takes ``request`` only (no FastAPI parameter solving / validation);
3. the generation and the version row are read through the pooled connection's raw sqlite3
   connection (autocommit, no BEGIN/ROLLBACK, no SQLAlchemy statement machinery);
4. the audit batch is appended with raw sqlite3 statements (head bump and read in one
   ``UPDATE … RETURNING``), still group-committed in a thread;
5. the group commit runs inline on the event loop, one commit per loop pass (no thread hop);
6. writers of all workers queue on an flock instead of SQLite's sleeping busy handler, and WAL
   checkpoints (with their fsync) run in a background thread instead of inside a commit;
7. (not measurable here, see ``read_path.py --targets strongroom-gcfreeze``) ``gc.freeze()``
   once the app is built, so that no full collection walks the ~140k start-up objects (~40 ms
   with the event loop stopped: the p99).

The last line skips the audit write altogether: the floor the rest of the request costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import sqlite3
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import read_path as rp
import read_path_steps as steps
import uvloop
from fastapi.routing import _IncludedRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import strongroom.auth.tokens as tokens_module
from strongroom.api.routes import secrets as secrets_routes
from strongroom.api.services import caller_of, json_response
from strongroom.audit.chain import link_hash
from strongroom.audit.event import AuditEvent
from strongroom.secrets.service import SecretService

GENERATION_SQL = "SELECT value FROM counters WHERE name = 'generation'"
VERSION_SQL = (
    "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
    "item_versions.created_at FROM items JOIN item_versions ON item_versions.item_id = items.id "
    "WHERE items.name = ? ORDER BY item_versions.version DESC LIMIT 1"
)
VERSION_AT_SQL = VERSION_SQL.replace("WHERE items.name = ?", "WHERE items.name = ? AND version = ?")
INSERT_SQL = (
    "INSERT INTO audit_events (seq, time, request_id, source_ip, access_id, auth_method, "
    "identity_arn, token_digest, action, path, status, outcome, reason, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class VersionRow:
    __slots__ = ("ciphertext", "created_at", "id", "name", "version")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.id, self.name, self.version, self.ciphertext, created = row
        self.created_at = datetime.fromisoformat(created).replace(tzinfo=UTC)


def driver(connection: Any) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy Connection (autocommit: isolation_level None)."""
    raw: sqlite3.Connection = connection.connection.driver_connection
    return raw


def raw_generation(connection: Any) -> int:
    return int(driver(connection).execute(GENERATION_SQL).fetchone()[0])


def raw_version_row(connection: Any, name: str, version: int | None) -> Any:
    from strongroom.errors import NotFoundError

    if version is None:
        row = driver(connection).execute(VERSION_SQL, (name,)).fetchone()
    else:
        row = driver(connection).execute(VERSION_AT_SQL, (name, version)).fetchone()
    if row is None:
        raise NotFoundError(f"no item named {name}")
    return VersionRow(row)


class RawAppender:
    """append_events on a dedicated sqlite3 connection: 4 statements, no SQLAlchemy.

    With ``serialize``, writers of all processes queue on an flock first (the kernel wakes the
    next one as soon as the lock is released) instead of meeting SQLITE_BUSY and sleeping in
    SQLite's busy handler (1, 2, 5, 10… ms), and this connection never checkpoints the WAL: a
    :class:`Checkpointer` thread does, so no request waits for a checkpoint's fsync.
    """

    def __init__(self, path: str, *, serialize: bool = False) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.lock_file = None
        if serialize:
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.lock_file = open(path + ".write-lock", "a+b")  # noqa: SIM115 - lives with self

    def append(self, events: list[AuditEvent]) -> None:
        if self.lock_file is not None:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX)
        try:
            self._append(events)
        finally:
            if self.lock_file is not None:
                fcntl.flock(self.lock_file, fcntl.LOCK_UN)

    def _append(self, events: list[AuditEvent]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            seq, prev = self.db.execute(
                "UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, hash",
                (len(events),),
            ).fetchone()
            seq -= len(events)
            rows = []
            for event in events:
                seq += 1
                record = event.record()
                current = link_hash(prev, seq, record)
                stamp = event.time.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
                rows.append((seq, stamp, *list(record.values())[1:], prev, current))
                prev = current
            self.db.executemany(INSERT_SQL, rows)
            self.db.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        for event in events:
            event.written = True


class Checkpointer(threading.Thread):
    """Checkpoints the WAL in the background (PASSIVE: never blocks readers or writers)."""

    def __init__(self, path: str, interval: float = 0.5) -> None:
        super().__init__(name="wal-checkpointer", daemon=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.interval = interval

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            with contextlib.suppress(sqlite3.OperationalError):  # another worker's checkpoint
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


class InlineGroupCommit:
    """Events handed over during one loop pass are committed together by one call_soon."""

    def __init__(self, appender: RawAppender) -> None:
        self.appender = appender
        self.pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self.copy_to_file: Any = lambda events: None

    async def write(self, event: AuditEvent) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append((event, future))
        await future

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        events = [event for event, _ in batch]
        try:
            self.appender.append(events)
            self.copy_to_file(events)
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
        else:
            for _, future in batch:
                future.set_result(None)


async def lean_read_secret(request: Request) -> Response:
    """read_secret without FastAPI's parameter machinery (same calls, same checks)."""
    name = request.path_params["name"]
    if name.endswith("/versions"):  # `{name:path}` also catches the versions route
        return await secrets_routes.secret_versions(request, name.removesuffix("/versions"))
    services = request.app.state.services
    event = request.scope["state"]["audit"]
    event.action = "secret.read"
    raw_version = request.query_params.get("version")
    version = int(raw_version) if raw_version else None
    with services.database.read() as connection:
        caller = caller_of(request, connection)
        result = services.secrets.read(connection, caller, name, version, event, event.time)
    return json_response(result)


def move_secrets_first(app: Any) -> None:
    """Change 1: match the secrets router before the ~25 routes registered ahead of it."""
    routes = app.router.routes
    index = next(
        i
        for i, r in enumerate(routes)
        if isinstance(r, _IncludedRouter) and r.original_router is secrets_routes.router
    )
    routes.insert(0, routes.pop(index))


def add_lean_read(app: Any) -> None:
    """Change 2: the read endpoint as a plain Starlette route taking ``request`` only."""
    app.router.routes.insert(0, Route("/v1/secrets/{name:path}", lean_read_secret, methods=["GET"]))


def use_raw_reads() -> None:
    """Change 3: the two hot-path queries on the raw sqlite3 connection."""
    tokens_module.read_generation = raw_generation
    SecretService._version_row = staticmethod(raw_version_row)


def use_raw_audit_append(app: Any, *, serialize: bool = False) -> RawAppender:
    """Change 4: append audit batches with raw sqlite3 (still in the writer's thread)."""
    services = app.state.services
    appender = RawAppender(services.database.engine.url.database, serialize=serialize)
    writer = services.writer
    writer._store = lambda events: (appender.append(events), writer.copy_to_file(events))
    return appender


def use_inline_group_commit(app: Any, appender: RawAppender) -> None:
    """Change 5: group-commit on the event loop, one commit per loop pass."""
    writer = app.state.services.writer
    inline = InlineGroupCommit(appender)
    inline.copy_to_file = writer.copy_to_file
    writer.write = inline.write


def use_flock_and_background_checkpoints(app: Any) -> RawAppender:
    """Change 6: writers queue on an flock; WAL checkpoints leave the request path."""
    appender = use_raw_audit_append(app, serialize=True)
    Checkpointer(appender.path).start()
    return appender


def apply_all(app: Any, *, inline_audit: bool) -> Any:
    """Changes 1-4, or 1-6 if ``inline_audit``: used by ``whatif_asgi.make_app``."""
    move_secrets_first(app)
    add_lean_read(app)
    use_raw_reads()
    if inline_audit:
        use_inline_group_commit(app, use_flock_and_background_checkpoints(app))
    else:
        use_raw_audit_append(app)
    return app


async def main_async(iterations: int) -> None:
    bench = await steps.setup()
    app, services = bench.app, bench.services
    for _ in range(300):
        await bench.request()

    print(
        f"{'whole ASGI request, µs per read':<66}{'1 at a time':>22}{'16 at once':>22}\n"
        f"{'':<66}{'wall':>11}{'CPU':>11}{'wall':>11}{'CPU':>11}"
    )

    async def measure(label: str) -> None:
        body = await bench.request()
        assert steps.SECRET_VALUE.encode() in body, body
        one = await steps.atimed(bench.request, iterations)
        many = await steps.atimed(bench.request, iterations, 16)
        cells = [statistics.median(x[i] for x in runs) for runs in (one, many) for i in (0, 1)]
        print(f"{label:<66}" + "".join(f"{c:>11.1f}" for c in cells), flush=True)

    await measure("as is")

    move_secrets_first(app)
    await measure("1. + secrets router matched first")
    add_lean_read(app)
    await measure("2. + read endpoint without FastAPI parameter solving")
    use_raw_reads()
    await measure("3. + generation and version row via raw sqlite3 (no BEGIN)")
    appender = use_raw_audit_append(app)
    await measure("4. + audit batch appended with raw sqlite3, thread group commit")
    use_inline_group_commit(app, appender)
    await measure("5. + group commit inline on the event loop (no thread hop)")
    use_inline_group_commit(app, use_flock_and_background_checkpoints(app))
    await measure("6. + flock-serialized writers, WAL checkpoints in a thread")
    writer = services.writer

    async def no_audit(event: AuditEvent) -> None:
        event.written = True

    writer.write = no_audit
    await measure("(floor: 1-3 with the audit write skipped)")
    services.database.dispose()
    print(f"\n(secret {rp.SECRET_NAME}; {iterations} requests per measurement, median of 5)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=4000)
    args = parser.parse_args()
    uvloop.run(main_async(args.iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
