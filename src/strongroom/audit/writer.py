"""Fail-closed audit writing without a commit per request.

Reads and denials change nothing, so their events can share a write: each request hands its
event to :class:`AuditWriter` and waits; the events that reach it in one pass of the event loop
are written together. A request's response leaves only after its event is durable; if the
write fails, every request in the batch answers 503 instead (SPEC section 7).

Where "durable" is depends on the database. On PostgreSQL it is a commit: as asynchronous I/O
on the loop, several batches at once (``audit/pg_append.py``, ``AUDIT_BATCHES_IN_FLIGHT``), or
with that set to 0 in a thread, one batch at a time while the next gathers. On SQLite it is
this process's audit journal (``strongroom.audit.journal``) when the server runs one, from
which the events move into the chain in batches shortly after, so that a read never waits for
the one SQLite write lock; without a journal it is a commit.

Mutations write their event inside their own transaction (:meth:`AuditWriter.append`), so a
failed audit rolls the change back.

Two sinks, one order: the ``AUDIT_FILE`` line is written before the event is stored, so that
either failing fails the request (503) and changes nothing (SPEC section 7):

- in a transaction (mutations, logins, PostgreSQL and journal-less SQLite group commits): the
  chain's statements, then the file line, then the commit. A failed file write rolls the
  transaction back. A commit that fails after the line was written leaves that line in the
  file for a request that answered 503: the file may hold events that never happened, never
  miss one that did. Such a request's 503 is audited after it when the trail can be written,
  under the same request ID; the chain is the record of what happened.
- with a journal (SQLite reads and denials): the file line, then the journal write.

A failed file write leaves nothing behind (no torn line): see :class:`AuditFileSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import structlog
from prometheus_client import Counter
from sqlalchemy import Connection

from strongroom.audit.chain import ChainKey
from strongroom.audit.event import AuditEvent
from strongroom.audit.journal import AuditJournal, encode_events, forget_progress, record_progress
from strongroom.audit.pg_append import AsyncAppender
from strongroom.audit.store import Appender, default_label
from strongroom.db.engine import Database, WriterBusyError
from strongroom.errors import ConfigurationError, ServiceUnavailableError

log = structlog.get_logger("strongroom.audit")

AUDIT_BATCHES = Counter(
    "strongroom_audit_batches_total",
    "Group commits of read and denial audit events, by where they ran",
    # loop: on the event loop (SQLite, lock free); waited: in a thread because another writer
    # held the SQLite lock; thread: in a thread (PostgreSQL, one batch at a time); async:
    # asynchronous I/O on the loop (PostgreSQL, several at once); journal: appended to
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
DRAIN_TIMEOUT_SECONDS = 2.0


class AuditFileSink:
    """Appends events as JSON lines to ``path`` (the optional ``AUDIT_FILE`` copy).

    The file is opened once per process, created 0600 whatever the umask (and tightened to
    0600 if found wider): it holds who read what, from where. A symbolic link, anything but a
    regular file, or a file of another user is refused with ConfigurationError at start, as
    the journal directory is: whoever controls it could send the trail elsewhere.

    Every process of a server (workers, login processes, the CLI) appends to the same file.
    Each append happens under an exclusive ``flock`` and, when the write fails (a full disk),
    the file is cut back to where it was, so a failed append leaves no partial line that the
    next line would be glued to, and raises OSError.
    """

    def __init__(self, path: Path) -> None:
        """Raises ConfigurationError if the file cannot be opened or is not ours."""
        self.path = path
        self._lock = threading.Lock()  # flock does not exclude threads sharing the descriptor
        self._descriptor = _open_private_append(path)

    def append(self, events: Sequence[AuditEvent]) -> None:
        """Append the events' lines, all or none; OSError when the file cannot take them."""
        data = encode_events(events)
        with self._lock:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX)
            try:
                size = os.lseek(self._descriptor, 0, os.SEEK_END)
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(self._descriptor, view) :]
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._descriptor, size)
                    raise
            finally:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._descriptor >= 0:
                os.close(self._descriptor)
                self._descriptor = -1


def _open_private_append(path: Path) -> int:
    """Open (or create, 0600) ``path`` for appending; refuse what is not our regular file."""
    name = f"STRONGROOM_AUDIT_FILE {path}"
    # O_NOFOLLOW: a link planted at the path could send the trail to a file of the attacker's
    # choosing. O_NONBLOCK: a FIFO planted there must be refused, not hang the start.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigurationError(f"{name} is a symbolic link: name the file itself") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads (O_NONBLOCK)
            raise ConfigurationError(f"{name} is not a regular file") from None
        raise ConfigurationError(f"cannot open {name}: {exc.strerror}") from None
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode):
            raise ConfigurationError(f"{name} is not a regular file")
        if found.st_uid != os.geteuid():
            # Its owner could read the trail, or rewrite it behind the server's back.
            raise ConfigurationError(
                f"{name} belongs to another user (uid {found.st_uid}): give it to the user "
                "that runs the server, or remove it"
            )
        if stat.S_IMODE(found.st_mode) != 0o600:
            os.fchmod(descriptor, 0o600)  # the owner only, whatever the umask made it
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


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
        key: ChainKey,
        file_sink: AuditFileSink | None = None,
        *,
        inline: bool | None = None,
        journal: AuditJournal | None = None,
        timeout: float | None = None,
        batches_in_flight: int = 0,
    ) -> None:
        """``key``: the audit chain key (``Keys.audit``). ``journal`` (SQLite only): reads' and
        denials' events are durable once appended there; this writer moves them into the
        chain afterwards, and owns the journal. ``timeout`` (``DB_TIMEOUT_SECONDS``; commits
        in a thread only): a request waits at most this long for its event to be stored, then
        answers 503; while a commit has been under way longer than that (a database that does
        not answer), new events are refused at once rather than queued behind it.

        The events go into this process's own chains (``audit/store.py``, :class:`Appender`),
        which the registry names after the process and its journal; :meth:`drain` closes them.

        ``batches_in_flight`` (PostgreSQL, with ``timeout``; 0: off): reads' and denials'
        batches are appended as asynchronous I/O on the loop, this many at once at most
        (``audit/pg_append.py``), instead of one at a time in a thread."""
        self._database = database
        label = default_label()
        if journal is not None:
            label += f", journal {journal.name}"
        self._appender = Appender(key, label)
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
        self._timeout = None if self._inline else timeout
        self._committing_since: float | None = None  # loop time the thread's commit began
        self._async: AsyncAppender | None = None
        if not self._inline and timeout is not None and batches_in_flight > 0:
            self._async = AsyncAppender(
                database, self._appender, timeout=timeout, max_in_flight=batches_in_flight
            )
        self._batches: dict[asyncio.Task[None], float] = {}  # async batches: their start

    @property
    def journal(self) -> AuditJournal | None:
        return self._journal

    async def write(self, event: AuditEvent) -> None:
        """Return once ``event`` is stored; raise ServiceUnavailableError if it cannot be."""
        loop = asyncio.get_running_loop()
        if self._timeout is not None and self._stuck(loop):
            raise ServiceUnavailableError(
                "the audit trail cannot be written",
                reason="audit commit stuck for longer than DB_TIMEOUT_SECONDS",
            )
        future: asyncio.Future[None] = loop.create_future()
        entry = (event, future)
        self._pending.append(entry)
        if self._inline:
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush_inline)
        elif self._async is not None:
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush_async)
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_in_thread())
        if self._timeout is None:
            await future
            return
        timer = loop.call_later(self._timeout, self._expire, entry)
        try:
            await future
        finally:
            timer.cancel()

    def _stuck(self, loop: asyncio.AbstractEventLoop) -> bool:
        since = self._committing_since
        if self._batches:
            since = min(self._batches.values())
        return (
            since is not None
            and self._timeout is not None
            and loop.time() - since > (self._timeout)
        )

    def _expire(self, entry: tuple[AuditEvent, asyncio.Future[None]]) -> None:
        """Its event was not stored within the timeout: 503 (dropped unless already being
        committed: then it is stored when the database answers, as a read that answered 503)."""
        future = entry[1]
        if future.done():
            return
        with contextlib.suppress(ValueError):
            self._pending.remove(entry)
        future.set_exception(
            ServiceUnavailableError(
                "the audit trail cannot be written",
                reason="audit commit took longer than DB_TIMEOUT_SECONDS",
            )
        )

    def _flush_async(self) -> None:
        """Start a batch of the events gathered in this loop pass, unless as many batches as
        allowed are in flight already (then the next to end starts it)."""
        self._scheduled = False
        appender = self._async
        if not self._pending or appender is None or len(self._batches) >= appender.max_in_flight:
            return
        batch, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._store_async(appender, batch))
        self._batches[task] = loop.time()
        task.add_done_callback(self._batch_ended)

    def _batch_ended(self, task: asyncio.Task[None]) -> None:
        self._batches.pop(task, None)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_async)

    async def _store_async(
        self, appender: AsyncAppender, batch: list[tuple[AuditEvent, asyncio.Future[None]]]
    ) -> None:
        AUDIT_BATCHES.labels("async").inc()
        events = [event for event, _ in batch]
        error: BaseException | None = None
        try:
            # The file first (see the module docstring): a failing file stores nothing.
            if self._file_sink is not None:
                self._file_sink.append(events)
            await appender.append(events)
        except Exception as exc:  # any failure to store must fail the requests closed
            log.error("audit write failed", error=repr(exc), events=len(events))
            error = exc
        except BaseException as exc:  # cancelled (shutdown): these requests fail closed too
            self._settle(batch, exc)
            raise
        else:
            for event in events:
                event.written = True
        self._settle(batch, error)

    def _flush_inline(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        try:
            self._flush_batch(batch)
        except BaseException as exc:
            # A loop callback that raises leaves its requests waiting forever: answer them.
            log.exception("audit write failed", events=len(batch))
            self._settle(batch, exc)
            if not isinstance(exc, Exception):
                raise

    def _flush_batch(self, batch: list[tuple[AuditEvent, asyncio.Future[None]]]) -> None:
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
            # The file first (see the module docstring): a failing file journals nothing.
            if self._file_sink is not None:
                self._file_sink.append(events)
            end = journal.append(encode_events(events))
        except OSError as exc:  # a full or failing disk: these requests fail closed
            log.error("audit write failed", error=repr(exc), events=len(events))
            self._settle(batch, exc)
            return
        AUDIT_BATCHES.labels("journal").inc()
        for event in events:
            event.written = True
        self._unmoved.append((events, end))
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
            # Already copied to the file when journaled.
            self._appender.append(connection, events)
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

    async def drain_journal(self) -> None:
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
                await asyncio.wait_for(asyncio.shield(self._mover), DRAIN_TIMEOUT_SECONDS)

    async def _store_in_thread(self, batch: list[tuple[AuditEvent, asyncio.Future[None]]]) -> None:
        self._settle(batch, await asyncio.to_thread(self._try_store, batch))

    async def _flush_in_thread(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            AUDIT_BATCHES.labels("thread").inc()
            self._committing_since = loop.time()
            try:
                error = await asyncio.to_thread(self._try_store, batch)
            finally:
                self._committing_since = None
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
        batch: list[tuple[AuditEvent, asyncio.Future[None]]], error: BaseException | None
    ) -> None:
        """Settle the futures of the batch's writers: stored, or ServiceUnavailableError."""
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(ServiceUnavailableError("the audit trail cannot be written"))

    def _store(self, events: list[AuditEvent], *, blocking: bool = True) -> None:
        with self._database.write(blocking=blocking) as connection:
            self.append(connection, events)
        for event in events:
            event.written = True

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

    def append(self, connection: Connection, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` to the chain and then to the file, inside the caller's write
        transaction; they are stored once it commits. ServiceUnavailableError (the caller's
        transaction must then roll back) if either sink fails."""
        self._appender.append(connection, events)
        if self._file_sink is None:
            return
        try:
            self._file_sink.append(events)
        except OSError as exc:
            log.error("audit file write failed", error=repr(exc), events=len(events))
            raise ServiceUnavailableError(
                "the audit trail cannot be written", reason=f"audit file write failed: {exc!r}"
            ) from exc

    @property
    def appender(self) -> Appender:
        """This process's side of the audit chains."""
        return self._appender

    def close_chains(self) -> int:
        """Close this process's chains (the registry records where each ends); the number
        closed. For processes that append and end without :meth:`drain` (CLI commands)."""
        return self._appender.close(self._database)

    async def drain(self) -> None:
        """Wait for the batch in flight, then close this process's chains (at shutdown)."""
        if self._flusher is not None:
            await self._flusher
        while self._batches or (self._async is not None and self._pending):
            if self._batches:
                await asyncio.wait(list(self._batches))
            else:
                self._flush_async()
        if self._async is not None:
            await self._async.aclose()
        for task in list(self._in_flight):
            await task
        if self._journal is not None:
            await self._close_journal(self._journal)
        # Events left in the journal (the database refused them) go into the chains of the
        # next process to start: this process appends nothing more, its chains can close.
        await asyncio.to_thread(self._appender.close, self._database)
        if self._file_sink is not None:
            self._file_sink.close()


@contextmanager
def audited_write(
    database: Database, writer: AuditWriter, event: AuditEvent, status: int
) -> Iterator[Connection]:
    """A write transaction whose audit event commits with it, or neither does.

    On success the event is recorded with ``status`` and appended (chain, then file) inside the
    transaction. If the block, the append or the commit fails, the event is left unwritten and
    the request's failure is audited by the middleware instead.
    """
    try:
        with database.write() as connection:
            yield connection
            event.finish(status)
            writer.append(connection, [event])
    except BaseException:
        event.reopen()  # nothing was stored: the response's status is recorded later
        raise
    event.written = True
