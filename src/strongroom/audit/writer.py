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
from sqlalchemy import Connection

from strongroom.audit.event import AuditEvent
from strongroom.audit.store import append_events
from strongroom.db.engine import Database
from strongroom.errors import ServiceUnavailableError

log = structlog.get_logger("strongroom.audit")


class AuditFileSink:
    """Appends events as JSON lines to ``path`` (the optional ``AUDIT_FILE`` copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, events: Sequence[AuditEvent]) -> None:
        lines = b"".join(orjson.dumps(event.record()) + b"\n" for event in events)
        with self._lock, self.path.open("ab") as handle:
            handle.write(lines)
            handle.flush()


class AuditWriter:
    """Group-commits audit events for one worker process."""

    def __init__(self, database: Database, file_sink: AuditFileSink | None) -> None:
        self._database = database
        self._file_sink = file_sink
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, event: AuditEvent) -> None:
        """Return once ``event`` is stored; raise ServiceUnavailableError if it cannot be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_until_empty())
        await future

    async def _flush_until_empty(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            events = [event for event, _ in batch]
            try:
                await asyncio.to_thread(self._store, events)
            except Exception as exc:  # any failure to store must fail the requests closed
                log.error("audit write failed", error=repr(exc), events=len(events))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            ServiceUnavailableError("the audit trail cannot be written")
                        )
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _store(self, events: list[AuditEvent]) -> None:
        with self._database.write() as connection:
            append_events(connection, events)
        self.copy_to_file(events)

    def copy_to_file(self, events: Sequence[AuditEvent]) -> None:
        if self._file_sink is not None:
            self._file_sink.append(events)

    async def drain(self) -> None:
        """Wait for the batch in flight (used at shutdown)."""
        if self._flusher is not None:
            await self._flusher


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
