"""In-process cost of each step of a Strongroom secret read, in µs (no HTTP, no wrk).

    .venv/bin/python bench/read_path_steps.py [--iterations 5000] [--cprofile N]

Builds the app with ``create_app`` on a temp SQLite database as a server worker does (WAL
checkpoints in a background ``Checkpointer``, ``gc.freeze()`` after start-up), sets up a
NON-admin reader as ``read_path.py`` does (through the REST API, over an in-process ASGI
transport), then times:

- the whole ASGI request (middleware, routing, handler, audit), 1, 16 and 64 at once, with the
  real audit writer and with the audit write replaced by a no-op;
- the steps of the handler: ``HotReader.generation()`` and ``HotReader.version_row()`` (the two
  driver-level queries on the held autocommit connection), ``TokenService.resolve`` of a cached
  caller, ``Keyring.decrypt`` and the whole ``SecretService.read``; for reference, the same two
  queries through SQLAlchemy (pool checkout, BEGIN, compile, rollback), which they replaced;
- the audit: an empty ``Database.write()`` transaction (flock turn, BEGIN IMMEDIATE, COMMIT),
  ``Appender.append`` in one for batches of 1, 16 and 64 events, and ``AuditWriter.write`` with
  the group commit on the event loop (SQLite's default) and in a thread (PostgreSQL's).

``--cprofile N`` instead profiles N requests, 16 at once. Everything runs on one uvloop event
loop in this process. Wall time includes waiting for SQLite and other processes; CPU time is
this process's (all threads), the figure to compare with ``server_cpu_us_per_read`` in
``read_path.py`` and the one that holds on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import gc
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import read_path as rp

from strongroom.api.app import create_app
from strongroom.audit.event import AuditEvent
from strongroom.audit.store import Appender
from strongroom.audit.writer import AuditWriter
from strongroom.config import Settings
from strongroom.crypto import item_context
from strongroom.db.engine import Checkpointer
from strongroom.db.tables import counters, item_versions, items
from strongroom.kit.clock import utc_now
from strongroom.request_context import RequestContext

T = TypeVar("T")
SECRET_VALUE = "bench-secret-value"


def report(name: str, samples: list[tuple[float, float]]) -> None:
    """Print the median wall and CPU (this process, all threads) µs per call."""
    wall = statistics.median(w for w, _ in samples)
    cpu = statistics.median(c for _, c in samples)
    print(f"  {name:<64}{wall:>9.1f} µs wall{cpu:>9.1f} µs CPU")


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

        async def send(message: MutableMapping[str, Any]) -> None:
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
    database = services.database
    checkpointer = Checkpointer(database).start()  # as the server's lifespan does
    # As the ASGI factory does: keep start-up objects out of every later collection.
    gc.collect()
    gc.freeze()
    for _ in range(200):
        await request()
    try:
        if cprofile:
            await profile(request, cprofile)
        else:
            await measure(services, token, request, iterations)
    finally:
        checkpointer.stop()
        drive(services.tokens._hot.aclose())
        database.dispose()


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (SQLite's hot reads are coroutines only in name,
    db/hot.py) to its end without an event loop: what a step costs, its await included."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the step suspended: it is not SQLite's inline path")


async def profile(request: Callable[[], Awaitable[bytes]], count: int) -> None:
    import cProfile
    import pstats

    async def worker() -> None:
        for _ in range(max(1, count // 16)):
            await request()

    profiler = cProfile.Profile()
    profiler.enable()
    await asyncio.gather(*(worker() for _ in range(16)))
    profiler.disable()
    print(f"cProfile of {count} requests, 16 at once, audit on (event loop thread only):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


async def measure(
    services: Any, token: str, request: Callable[[], Awaitable[bytes]], iterations: int
) -> None:
    print(f"whole request through the ASGI app ({iterations} per measurement, median of 5):")
    for concurrency in (1, 16, 64):
        report(f"{concurrency} at once, audit on", await atimed(request, iterations, concurrency))
    writer = services.writer
    real_write = writer.write

    async def no_audit(event: AuditEvent) -> None:
        event.written = True

    writer.write = no_audit
    for concurrency in (1, 16):
        report(
            f"{concurrency} at once, audit write replaced by a no-op",
            await atimed(request, iterations, concurrency),
        )
    writer.write = real_write

    print("\nsteps of the handler:")
    database, hot, now = services.database, services.tokens._hot, utc_now()
    name = rp.SECRET_NAME
    report(
        "HotReader.generation() (SELECT counters)",
        timed(lambda: drive(hot.generation()), iterations),
    )
    report(
        "HotReader.version_row() (SELECT item ⋈ version)",
        timed(lambda: drive(hot.version_row(name, None)), iterations),
    )
    report(
        "TokenService.resolve (cached caller: digest + generation)",
        timed(lambda: drive(services.tokens.resolve(token, now)), iterations),
    )
    row = drive(hot.version_row(name, None))
    assert row is not None
    item_id, _, number, ciphertext, _ = row
    keyring, context = services.keys.keyring, item_context(item_id, number)
    report("Keyring.decrypt", timed(lambda: keyring.decrypt(ciphertext, context), iterations))
    caller = drive(services.tokens.resolve(token, now))
    event = AuditEvent(time=now, request_id="r", source_ip="127.0.0.1", action="secret.read")
    report(
        "SecretService.read (check, version row, decrypt)",
        timed(
            lambda: drive(services.secrets.read(caller, name, None, RequestContext(event, now))),
            iterations,
        ),
    )
    generation_query = select(counters.c.value).where(counters.c.name == "generation")
    version_query = (
        select(items.c.id, items.c.name, item_versions.c.version, item_versions.c.ciphertext)
        .join(item_versions, item_versions.c.item_id == items.c.id)
        .where(items.c.name == name)
        .order_by(item_versions.c.version.desc())
        .limit(1)
    )

    def through_sqlalchemy() -> None:
        with database.read() as connection:
            connection.execute(generation_query).scalar_one()
            connection.execute(version_query).first()

    report(
        "reference: the same two queries via SQLAlchemy Database.read()",
        timed(through_sqlalchemy, iterations),
    )

    print("\naudit (per event):")

    def events(n: int) -> list[AuditEvent]:
        out = []
        for _ in range(n):
            event = AuditEvent(time=utc_now(), request_id="r", source_ip="127.0.0.1", action="a")
            event.finish(200)
            out.append(event)
        return out

    def empty_write() -> None:
        with database.write():
            pass

    rounds = max(20, iterations // 4)
    report("empty Database.write() (flock, BEGIN IMMEDIATE, COMMIT)", timed(empty_write, rounds))
    appender = Appender(services.keys.audit)
    for batch in (1, 16, 64):

        def store(batch: int = batch) -> None:
            with database.write() as connection:
                appender.append(connection, events(batch))

        per_event = [(w / batch, c / batch) for w, c in timed(store, max(20, rounds // batch))]
        report(f"Appender.append in its own write transaction, batch {batch}", per_event)
    in_thread = AuditWriter(database, services.keys.audit, inline=False)
    for label, audit in (("on the loop", writer), ("in a thread", in_thread)):

        async def write_one(audit: AuditWriter = audit) -> None:
            await audit.write(events(1)[0])

        report(f"AuditWriter.write, commit {label}, 1 at a time", await atimed(write_one, rounds))
        report(
            f"AuditWriter.write, commit {label}, 16 at once",
            await atimed(write_one, iterations, 16),
        )
    report(
        "reference: asyncio.to_thread hop (no work)",
        await atimed(lambda: asyncio.to_thread(lambda: None), iterations),
    )


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
