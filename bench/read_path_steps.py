"""In-process cost of each step of a Strongroom secret read, in µs (no HTTP, no wrk).

    .venv/bin/python bench/read_path_steps.py [--iterations 5000]

Builds the app with ``create_app`` on a temp SQLite database, sets up a NON-admin reader as
``read_path.py`` does (through the REST API, over an in-process ASGI transport), then times:

- the whole ASGI request (middleware, routing, handler, audit), one at a time and 16 at once,
  with the real audit writer and with the audit write replaced by a no-op;
- the steps inside it: pool checkout + rollback, the generation query, token resolve, the
  version-row query, decrypt, and the audit group commit for batches of 1, 16 and 64 events,
  with and without the hop to a thread.

Everything runs on one uvloop event loop in this process. Wall time includes waiting for
SQLite and other processes; CPU time is this process's (all threads), the figure to compare
with ``server_cpu_us_per_read`` in ``read_path.py`` and the one that holds on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import read_path as rp

from strongroom.api.app import create_app
from strongroom.audit.chain import link_hash
from strongroom.audit.event import AuditEvent
from strongroom.audit.store import append_events
from strongroom.auth.tokens import read_generation
from strongroom.config import Settings
from strongroom.crypto import item_context
from strongroom.kit.clock import utc_now

SECRET_VALUE = "bench-secret-value"


def report(name: str, samples: list[tuple[float, float]]) -> None:
    """Print the median wall and CPU (this process, all threads) µs per call."""
    wall = statistics.median(w for w, _ in samples)
    cpu = statistics.median(c for _, c in samples)
    print(f"  {name:<58}{wall:>9.1f} µs wall{cpu:>9.1f} µs CPU")


def timed(fn: Callable[[], Any], iterations: int, repeats: int = 5) -> list[tuple[float, float]]:
    results = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            fn()
        wall = (time.perf_counter() - start) / iterations * 1e6
        results.append((wall, (time.process_time() - start_cpu) / iterations * 1e6))
    return results


async def atimed(
    fn: Callable[[], Awaitable[Any]], iterations: int, concurrency: int = 1, repeats: int = 5
) -> list[tuple[float, float]]:
    results = []
    per_task = max(1, iterations // concurrency)

    async def worker() -> None:
        for _ in range(per_task):
            await fn()

    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        count = per_task * concurrency
        wall = (time.perf_counter() - start) / count * 1e6
        results.append((wall, (time.process_time() - start_cpu) / count * 1e6))
    return results


@dataclass
class Bench:
    app: Any
    services: Any
    token: str
    request: Callable[[], Awaitable[bytes]]


async def setup() -> Bench:
    """The app on a temp SQLite file, a NON-admin reader's token, and one-request callable."""
    tmp = Path(tempfile.mkdtemp(prefix="strongroom-steps-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'strongroom.db'}",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        log_format="json",
    )
    from strongroom.bootstrap import bootstrap

    app = create_app(settings)
    services = app.state.services
    admin = bootstrap(services.database, services.keys, services.writer)
    base = "http://bench.invalid"
    transport = httpx.ASGITransport(app=app)
    # read_path's helper speaks HTTP through a sync client; do the same steps here, async.
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:

        async def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
            response = await http.request(method, path, **kwargs)
            assert response.status_code == expect, (path, response.status_code, response.text)
            return response.json() if response.content else None

        login = await call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": admin.access_id,
                "access_type": "access_key",
                "access_key": admin.access_key,
            },
        )
        auth = {"Authorization": f"Bearer {login['token']}"}
        method = await call(
            "POST",
            "/v1/auth-methods",
            201,
            json={"type": "api_key", "name": "bench-reader", "jwt_ttl": 720},
            headers=auth,
        )
        await call("POST", "/v1/roles", 201, json={"name": "bench-reader"}, headers=auth)
        await call(
            "PUT",
            "/v1/roles/bench-reader/rules",
            200,
            json={"path": "/bench/*", "capabilities": ["read"]},
            headers=auth,
        )
        await call(
            "POST",
            "/v1/roles/bench-reader/associations",
            201,
            json={"auth_method": "bench-reader"},
            headers=auth,
        )
        await call(
            "POST",
            "/v1/secrets",
            201,
            json={"name": rp.SECRET_NAME, "value": SECRET_VALUE},
            headers=auth,
        )
        reader = await call(
            "POST",
            "/v1/auth/login",
            200,
            json={
                "access_id": method["access_id"],
                "access_type": "access_key",
                "access_key": method["access_key"],
            },
        )
    token = reader["token"]

    # A bare ASGI request: what uvicorn hands the app, minus the socket.
    scope_template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/secrets" + rp.SECRET_NAME,
        "raw_path": ("/v1/secrets" + rp.SECRET_NAME).encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8300),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def request() -> bytes:
        status = [0]
        body = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await app(dict(scope_template), receive, send)
        assert status[0] == 200, (status[0], body)
        return b"".join(body)

    return Bench(app=app, services=services, token=token, request=request)


async def main_async(iterations: int, cprofile: int) -> None:
    bench = await setup()
    services, token, request = bench.services, bench.token, bench.request

    for _ in range(200):
        await request()

    if cprofile:
        import cProfile
        import pstats

        async def sixteen_at_once() -> None:
            async def worker() -> None:
                for _ in range(max(1, cprofile // 16)):
                    await request()

            await asyncio.gather(*(worker() for _ in range(16)))

        profiler = cProfile.Profile()
        profiler.enable()
        await sixteen_at_once()
        profiler.disable()
        print(f"cProfile of {cprofile} requests, 16 at once, audit on (event loop thread only):")
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        database = services.database
        database.dispose()
        return

    print(f"whole request through the ASGI app ({iterations} per measurement, median of 5):")
    report("1 at a time, audit on", await atimed(request, iterations))
    report("16 at once, audit on", await atimed(request, iterations, 16))
    report("64 at once, audit on", await atimed(request, iterations, 64))
    writer = services.writer
    real_write = writer.write

    async def no_audit(event: AuditEvent) -> None:
        event.written = True

    writer.write = no_audit
    report("1 at a time, audit write replaced by a no-op", await atimed(request, iterations))
    report("16 at once, audit write replaced by a no-op", await atimed(request, iterations, 16))
    writer.write = real_write

    database = services.database
    now = utc_now()
    print("\nsteps of the handler:")

    def pool_checkout() -> None:
        with database.read():
            pass

    report("Database.read(): pool checkout + rollback + checkin", timed(pool_checkout, iterations))
    with database.read() as connection:
        report(
            "read_generation (SELECT counters)",
            timed(lambda: read_generation(connection), iterations),
        )
        report(
            "TokenService.resolve (cached caller)",
            timed(lambda: services.tokens.resolve(connection, token, now), iterations),
        )
        version_row = services.secrets._version_row
        report(
            "SecretService._version_row (SELECT item ⋈ version)",
            timed(lambda: version_row(connection, rp.SECRET_NAME, None), iterations),
        )
        row = version_row(connection, rp.SECRET_NAME, None)
        raw = connection.connection.driver_connection
        sql = "SELECT value FROM counters WHERE name = 'generation'"
        report(
            "same generation query through raw sqlite3",
            timed(lambda: raw.execute(sql).fetchone(), iterations),
        )
        version_sql = (
            "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
            "item_versions.created_at FROM items JOIN item_versions "
            "ON item_versions.item_id = items.id WHERE items.name = ? "
            "ORDER BY item_versions.version DESC LIMIT 1"
        )
        report(
            "same version-row query through raw sqlite3",
            timed(lambda: raw.execute(version_sql, (rp.SECRET_NAME,)).fetchone(), iterations),
        )

    def sqlalchemy_read_path() -> None:
        with database.read() as connection:
            read_generation(connection)
            version_row(connection, rp.SECRET_NAME, None)

    report(
        "checkout + generation + version row + rollback (SQLAlchemy)",
        timed(sqlalchemy_read_path, iterations),
    )
    held = database.engine.raw_connection()
    held_sqlite = held.driver_connection
    held_sqlite.isolation_level = None  # autocommit: each SELECT is its own read transaction

    def raw_read_path() -> None:
        held_sqlite.execute(sql).fetchone()
        held_sqlite.execute(version_sql, (rp.SECRET_NAME,)).fetchone()

    report("the same two queries, raw sqlite3, held connection", timed(raw_read_path, iterations))
    held.close()
    keyring = services.keys.keyring
    context = item_context(row.id, row.version)
    report("Keyring.decrypt", timed(lambda: keyring.decrypt(row.ciphertext, context), iterations))

    print("\naudit group commit (per event):")

    def events(n: int) -> list[AuditEvent]:
        out = []
        for _ in range(n):
            event = AuditEvent(time=utc_now(), request_id="r", source_ip="127.0.0.1", action="a")
            event.finish(200)
            out.append(event)
        return out

    for batch in (1, 16, 64):
        rounds = max(20, iterations // batch // 4)

        def store(batch: int = batch) -> None:
            with database.write() as connection:
                append_events(connection, events(batch))

        per_event = [(w / batch, c / batch) for w, c in timed(store, rounds)]
        report(f"append_events in its own write transaction, batch {batch}", per_event)
    raw_connection = database.engine.raw_connection()
    raw_sqlite = raw_connection.driver_connection
    raw_sqlite.isolation_level = None
    insert_sql = (
        "INSERT INTO audit_events (seq, time, request_id, source_ip, access_id, auth_method, "
        "identity_arn, token_digest, action, path, status, outcome, reason, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def raw_append(batch: list[AuditEvent]) -> None:
        """append_events's statements on raw sqlite3, head bump and read in one statement."""
        raw_sqlite.execute("BEGIN IMMEDIATE")
        try:
            seq, prev = raw_sqlite.execute(
                "UPDATE audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, hash",
                (len(batch),),
            ).fetchone()
            seq -= len(batch)
            rows = []
            for event in batch:
                seq += 1
                record = event.record()
                current = link_hash(prev, seq, record)
                stamp = event.time.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
                rows.append((seq, stamp, *list(record.values())[1:], prev, current))
                prev = current
            raw_sqlite.executemany(insert_sql, rows)
            raw_sqlite.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))
            raw_sqlite.execute("COMMIT")
        except BaseException:
            raw_sqlite.execute("ROLLBACK")
            raise

    for batch in (1, 16, 64):
        rounds = max(20, iterations // batch // 4)
        per_event = [
            (w / batch, c / batch)
            for w, c in timed(lambda batch=batch: raw_append(events(batch)), rounds)
        ]
        report(f"the same on raw sqlite3 (UPDATE … RETURNING), batch {batch}", per_event)
    raw_connection.close()
    report(
        "asyncio.to_thread hop (no work)",
        await atimed(lambda: asyncio.to_thread(lambda: None), iterations),
    )
    report(
        "AuditWriter.write, 1 at a time (thread hop + commit of 1)",
        await atimed(lambda: writer.write(events(1)[0]), iterations // 4),
    )
    report(
        "AuditWriter.write, 16 at once",
        await atimed(lambda: writer.write(events(1)[0]), iterations, 16),
    )
    database.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument(
        "--cprofile", type=int, default=0, help="instead: cProfile this many requests, 16 at once"
    )
    args = parser.parse_args()
    uvloop.run(main_async(args.iterations, args.cprofile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
