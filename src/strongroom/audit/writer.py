"""Fail-closed audit writing without a commit per request.

Reads and denials change nothing, so their events can share a commit: each request hands its
event to :class:`AuditWriter` and waits; while one batch is being committed (in a thread, off
the event loop) the next batch gathers. A request's response leaves only after its event is
durable; if the batch fails, every request in it answers 503 instead (SPEC section 7).

Mutations write their event inside their own transaction (``append_events``), so a failed
audit rolls the change back; :meth:`AuditWriter.copy_to_file` then mirrors it to the file.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Connection

from strongroom.audit.event import AuditEvent
from strongroom.audit.store import append_events
from strongroom.db.engine import Database, WriterBusyError
from strongroom.errors import ServiceUnavailableError

log = structlog.get_logger("strongroom.audit")

AUDIT_BATCHES = Counter(
    "strongroom_audit_batches_total",
    "Group commits of read and denial audit events, by where they ran",
    # loop: on the event loop (SQLite, lock free); waited: in a thread because another writer
    # held the SQLite lock; thread: in a thread by design (PostgreSQL)
    ["path"],
)


class AuditFileSink:
    """Appends events as JSON lines to ``path`` (the optional ``AUDIT_FILE`` copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One handle for the process's life: O_APPEND keeps lines from several workers whole.
        self._handle = path.open("ab", buffering=0)

    def append(self, events: Sequence[AuditEvent]) -> None:
        lines = b"".join(orjson.dumps(event.record()) + b"\n" for event in events)
        with self._lock:
            self._handle.write(lines)

    def close(self) -> None:
        self._handle.close()


class AuditWriter:
    """Group-commits audit events for one worker process.

    On SQLite a commit costs tens of microseconds, less than a hop to a thread, so the batch
    is committed on the event loop once per loop pass: every request that reached its audit
    point in that pass shares one commit. On PostgreSQL a commit waits for the server's WAL
    flush, so batches are committed in a thread while the next one gathers.
    """

    def __init__(
        self, database: Database, file_sink: AuditFileSink | None, *, inline: bool | None = None
    ) -> None:
        self._database = database
        self._file_sink = file_sink
        self._inline = database.dialect == "sqlite" if inline is None else inline
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._scheduled = False
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[None]] = set()

    async def write(self, event: AuditEvent) -> None:
        """Return once ``event`` is stored; raise ServiceUnavailableError if it cannot be."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, future))
        if self._inline:
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush_inline)
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_in_thread())
        await future

    def _flush_inline(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        try:
            error = self._try_store(batch, blocking=False)
        except WriterBusyError:
            # Another writer (a login, the other worker) holds the lock: wait for it in a
            # thread rather than stall every request on this event loop.
            AUDIT_BATCHES.labels("waited").inc()
            task = asyncio.ensure_future(self._store_in_thread(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            return
        AUDIT_BATCHES.labels("loop").inc()
        self._settle(batch, error)

    async def _store_in_thread(self, batch: list[tuple[AuditEvent, asyncio.Future[None]]]) -> None:
        self._settle(batch, await asyncio.to_thread(self._try_store, batch))

    async def _flush_in_thread(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            AUDIT_BATCHES.labels("thread").inc()
            error = await asyncio.to_thread(self._try_store, batch)
            self._settle(batch, error)

    def _try_store(
        self, batch: list[tuple[AuditEvent, asyncio.Future[None]]], *, blocking: bool = True
    ) -> Exception | None:
        """Store the batch; return the failure instead of raising (but WriterBusyError)."""
        try:
            self._store([event for event, _ in batch], blocking=blocking)
        except WriterBusyError:
            raise
        except Exception as exc:  # any failure to store must fail the requests closed
            log.error("audit write failed", error=repr(exc), events=len(batch))
            return exc
        return None

    @staticmethod
    def _settle(
        batch: list[tuple[AuditEvent, asyncio.Future[None]]], error: Exception | None
    ) -> None:
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(ServiceUnavailableError("the audit trail cannot be written"))

    def _store(self, events: list[AuditEvent], *, blocking: bool = True) -> None:
        with self._database.write(blocking=blocking) as connection:
            append_events(connection, events)
        self.copy_to_file(events)

    def copy_to_file(self, events: Sequence[AuditEvent]) -> None:
        if self._file_sink is not None:
            self._file_sink.append(events)

    async def drain(self) -> None:
        """Wait for the batch in flight (used at shutdown)."""
        if self._flusher is not None:
            await self._flusher
        for task in list(self._in_flight):
            await task
        if self._file_sink is not None:
            self._file_sink.close()


@contextmanager
def audited_write(
    database: Database, writer: AuditWriter, event: AuditEvent, status: int
) -> Iterator[Connection]:
    """A write transaction whose audit event commits with it, or neither does.

    On success the event is recorded with ``status`` and appended inside the transaction, then
    mirrored to the audit file. If the block raises, nothing is written here and the request's
    failure is audited by the middleware instead.
    """
    with database.write() as connection:
        yield connection
        event.finish(status)
        append_events(connection, [event])
    writer.copy_to_file([event])
