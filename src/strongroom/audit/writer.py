"""Fail-closed audit writing without a commit per request.

Reads and denials change nothing, so their events can share a write: each request hands its
event to :class:`AuditWriter` and waits; the events that reach it in one pass of the event loop
are written together. A request's response leaves only after its event is durable; if the
write fails, every request in the batch answers 503 instead (SPEC section 7).

Where "durable" is depends on the database. On PostgreSQL it is a commit (in a thread, while the
next batch gathers). On SQLite it is this process's audit journal (``strongroom.audit.journal``)
when the server runs one, from which the events move into the chain in batches shortly after,
so that a read never waits for the one SQLite write lock; without a journal it is a commit.

Mutations write their event inside their own transaction (``append_events``), so a failed
audit rolls the change back; :meth:`AuditWriter.copy_to_file` then mirrors it to the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import structlog
from prometheus_client import Counter
from sqlalchemy import Connection

from strongroom.audit.event import AuditEvent
from strongroom.audit.journal import AuditJournal, encode_events, forget_progress, record_progress
from strongroom.audit.store import append_events
from strongroom.db.engine import Database, WriterBusyError
from strongroom.errors import ServiceUnavailableError
from strongroom.kit.private_files import private_directory, private_opener

log = structlog.get_logger("strongroom.audit")

AUDIT_BATCHES = Counter(
    "strongroom_audit_batches_total",
    "Group commits of read and denial audit events, by where they ran",
    # loop: on the event loop (SQLite, lock free); waited: in a thread because another writer
    # held the SQLite lock; thread: in a thread by design (PostgreSQL); journal: appended to
    # this process's audit journal (SQLite, in a server), to be moved into the chain after
    ["path"],
)
JOURNAL_MOVES = Counter(
    "strongroom_audit_journal_moves_total",
    "Moves of journaled audit events into the chain, by where they ran",
    # loop: on the event loop (the SQLite lock was free); waited: in a thread, for the lock;
    # failed: the database refused (retried; the events stay in the journal meanwhile)
    ["path"],
)

# After a journal write, the move into the chain waits this long so that the next batches join
# it, or until MOVE_ON_LOOP_MAX_EVENTS events have gathered. A move's transaction costs the
# loop a few hundred microseconds whatever its size: at a few hundred reads a second, a 5 ms
# wait made nearly every read a move of its own, a fifth of a worker's CPU (bench/login.py).
MOVE_DELAY_SECONDS = 0.05
MOVE_RETRY_SECONDS = 1.0
# A move runs on the event loop only for this many events at most (about 20 µs each): a
# backlog (after the lock was held long) moves in a thread, in transactions of at most
# MOVE_MAX_EVENTS, rather than stall the loop.
MOVE_ON_LOOP_MAX_EVENTS = 64
MOVE_MAX_EVENTS = 1000
# A journal this large whose events are all chained is replaced by a new, empty one.
ROTATE_BYTES = 4 * 1024 * 1024
# How long GET /v1/audit waits for this process's journal to reach the chain.
SETTLE_TIMEOUT_SECONDS = 2.0


class AuditFileSink:
    """Appends events as JSON lines to ``path`` (the optional ``AUDIT_FILE`` copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Disclosure: the trail names every caller, path and source address. Created 0600 in
        # folders made 0700, whatever the umask (SPEC section 6); an existing file (one a log
        # shipper reads, say) keeps its mode.
        private_directory(path.parent)
        # One handle for the process's life: O_APPEND keeps lines from several workers whole.
        self._handle = open(path, "ab", buffering=0, opener=private_opener)  # noqa: SIM115 (held)

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
        self,
        database: Database,
        file_sink: AuditFileSink | None,
        *,
        inline: bool | None = None,
        journal: AuditJournal | None = None,
    ) -> None:
        """``journal`` (SQLite only): reads' and denials' events are durable once appended
        there; this writer moves them into the chain afterwards, and owns the journal."""
        self._database = database
        self._file_sink = file_sink
        self._inline = database.dialect == "sqlite" if inline is None else inline
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._scheduled = False
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[None]] = set()
        self._journal = journal if self._inline else None
        # Journal writes whose events are not in the chain yet: the events, and the journal's
        # size after them (what the chain has covered once they are in).
        self._unmoved: deque[tuple[list[AuditEvent], int]] = deque()
        self._retired: list[str] = []  # replaced journals whose progress rows can go
        self._move_timer: asyncio.TimerHandle | None = None
        self._gathered = 0  # events journaled since the move timer was set
        self._mover: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def journal(self) -> AuditJournal | None:
        return self._journal

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
        if self._journal is not None:
            self._write_journal(self._journal, batch)
            return
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

    def _write_journal(
        self, journal: AuditJournal, batch: list[tuple[AuditEvent, asyncio.Future[None]]]
    ) -> None:
        events = [event for event, _ in batch]
        try:
            end = journal.append(encode_events(events))
        except OSError as exc:  # a full or failing disk: these requests fail closed
            log.error("audit journal write failed", error=repr(exc), events=len(events))
            self._settle(batch, exc)
            return
        AUDIT_BATCHES.labels("journal").inc()
        for event in events:
            event.written = True
        self._unmoved.append((events, end))
        self.copy_to_file(events)
        self._settle(batch, None)
        self._schedule_move(len(events))

    def _schedule_move(self, added: int) -> None:
        """Move after MOVE_DELAY_SECONDS, or now if a move on the loop would be full."""
        if self._mover is not None and not self._mover.done():
            return  # the move under way takes these events too
        self._gathered += added
        if self._gathered >= MOVE_ON_LOOP_MAX_EVENTS:
            if self._move_timer is not None:
                self._move_timer.cancel()
            self._start_move()
        elif self._move_timer is None:
            loop = asyncio.get_running_loop()
            self._move_timer = loop.call_later(MOVE_DELAY_SECONDS, self._start_move)

    def _start_move(self) -> None:
        self._move_timer = None
        self._gathered = 0
        if self._mover is None or self._mover.done():
            self._mover = asyncio.ensure_future(self._move())

    def _take_unmoved(
        self, limit: int, *, at_least_one: bool = True
    ) -> tuple[list[tuple[list[AuditEvent], int]], list[AuditEvent]]:
        """The oldest journal writes, whole, up to ``limit`` events (and, unless told
        otherwise, at least one write, however large)."""
        taken: list[tuple[list[AuditEvent], int]] = []
        events: list[AuditEvent] = []
        while self._unmoved and (
            (at_least_one and not taken) or len(events) + len(self._unmoved[0][0]) <= limit
        ):
            write = self._unmoved.popleft()
            taken.append(write)
            events += write[0]
        return taken, events

    async def _move(self) -> None:
        """Move journaled events into the chain until none are left: on the loop when the
        SQLite lock is free, MOVE_ON_LOOP_MAX_EVENTS at a time; else (the lock is busy, or one
        journal write alone is larger) in a thread, up to MOVE_MAX_EVENTS. No request waits."""
        while self._unmoved and self._journal is not None:
            journal = self._journal
            taken, events = self._take_unmoved(MOVE_ON_LOOP_MAX_EVENTS)
            retired = self._retired
            self._retired = []
            try:
                try:
                    if len(events) > MOVE_ON_LOOP_MAX_EVENTS:
                        raise WriterBusyError  # a long transaction would stall the loop
                    self._move_batch(journal.name, events, taken[-1][1], retired, blocking=False)
                    JOURNAL_MOVES.labels("loop").inc()
                except WriterBusyError:
                    # One thread hop for as many whole writes as a transaction may hold.
                    more, extra = self._take_unmoved(
                        MOVE_MAX_EVENTS - len(events), at_least_one=False
                    )
                    taken += more
                    events += extra
                    await asyncio.to_thread(
                        self._move_batch, journal.name, events, taken[-1][1], retired, blocking=True
                    )
                    JOURNAL_MOVES.labels("waited").inc()
                else:
                    await asyncio.sleep(0)  # requests run between two moves on the loop
            except Exception as exc:  # the events stay journaled; try again later
                JOURNAL_MOVES.labels("failed").inc()
                log.error("audit journal move failed", error=repr(exc), events=len(events))
                self._unmoved.extendleft(reversed(taken))
                self._retired = retired + self._retired
                if self._stopping:
                    return
                await asyncio.sleep(MOVE_RETRY_SECONDS)
                continue
        self._rotate_if_large()

    def _move_batch(
        self,
        journal: str,
        events: list[AuditEvent],
        end: int,
        retired: list[str],
        *,
        blocking: bool,
    ) -> None:
        with self._database.write(blocking=blocking) as connection:
            append_events(connection, events)
            record_progress(connection, journal, end)
            forget_progress(connection, retired)

    def _rotate_if_large(self) -> None:
        """Replace a large journal whose events are all chained by a new one."""
        journal = self._journal
        if journal is None or self._unmoved or journal.size < ROTATE_BYTES:
            return
        try:
            self._journal = AuditJournal.create(journal.directory)
        except OSError as exc:
            log.warning("audit journal rotation failed", error=repr(exc))
            return
        journal.close(remove=True)
        self._retired.append(journal.name)

    async def settle(self) -> None:
        """Wait (briefly) until this process's journaled events are in the chain."""
        if self._journal is None:
            return
        if self._move_timer is not None:
            self._move_timer.cancel()
            self._move_timer = None
        if self._unmoved and (self._mover is None or self._mover.done()):
            self._mover = asyncio.ensure_future(self._move())
        if self._mover is not None and not self._mover.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._mover), SETTLE_TIMEOUT_SECONDS)

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

    async def _close_journal(self, journal: AuditJournal) -> None:
        if self._move_timer is not None:
            self._move_timer.cancel()
            self._move_timer = None
        self._stopping = True  # a failing mover returns rather than wait to retry
        if self._mover is not None and not self._mover.done():
            await self._mover
        while self._unmoved:
            taken, events = self._take_unmoved(MOVE_MAX_EVENTS)
            end = taken[-1][1]
            try:
                await asyncio.to_thread(
                    self._move_batch, journal.name, events, end, self._retired, blocking=True
                )
                self._retired = []
            except Exception as exc:  # left in the journal: the next start chains them
                log.error("audit journal move failed at stop", error=repr(exc), events=len(events))
                self._unmoved.extendleft(reversed(taken))
                break
        self._journal = None
        # Removed only when all of it is chained; its progress row goes at the next start.
        journal.close(remove=not self._unmoved)

    def copy_to_file(self, events: Sequence[AuditEvent]) -> None:
        if self._file_sink is not None:
            self._file_sink.append(events)

    async def drain(self) -> None:
        """Wait for the batch in flight (used at shutdown)."""
        if self._flusher is not None:
            await self._flusher
        for task in list(self._in_flight):
            await task
        if self._journal is not None:
            await self._close_journal(self._journal)
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
