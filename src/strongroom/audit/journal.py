"""The audit journal: where a server process's read and denial events become durable at once.

On SQLite one write lock serves every process, and logins' token writes take it too. A read
that committed its audit event before answering waited behind them: up to 15 ms during a burst
of logins (``bench/login.py``). So on SQLite each server process appends its read and denial
events to a journal file of its own, answers, and moves the events into the hash chain shortly
after, in batches, off the request path (:class:`~strongroom.audit.writer.AuditWriter`).

Durability is that of a SQLite commit here: the journal is written with ``write(2)`` and not
fsynced, as SQLite in WAL mode with ``synchronous=NORMAL`` does not fsync a commit. Both survive
the process dying; neither promises to survive the machine losing power.

Contract:

- :meth:`AuditJournal.append` returns once the events' bytes are in the file, or raises
  OSError after cutting the file back to where it was (no partial line stays behind). The caller
  answers 503 then (SPEC section 7).
- A journal is held under an exclusive ``flock`` by the process that writes it, for as long as
  it is open. A journal that nobody holds belongs to a process that ended:
  :func:`recover_orphans` moves whatever of it is not in the chain yet, then deletes it.
- ``audit_journal_progress`` holds, per journal, the byte offset moved into the chain so far,
  written in the same transaction as the events it covers: a crash between that commit and
  anything after it neither loses an event nor chains one twice.

The files hold no secret (events carry a token only as its keyed digest) and live beside the
database, 0600 in a 0700 directory: whoever can edit them can edit the database itself. They
are still read as untrusted input (strict types, bounded lines).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import Connection, text

from strongroom.audit.chain import ChainKey
from strongroom.audit.event import AuditEvent
from strongroom.audit.store import RECORD_COLUMNS, Appender, default_label
from strongroom.db.engine import Database
from strongroom.errors import ConfigurationError

log = structlog.get_logger("strongroom.audit")

JOURNAL_SUFFIX = ".jsonl"
UNREADABLE_SUFFIX = ".unreadable"
# A line longer than this is not one this code wrote (events are bounded well below it).
MAX_LINE_BYTES = 64 * 1024
# Events chained per statement batch when a journal is recovered.
RECOVERY_BATCH = 1000

_TEXT_FIELDS = tuple(name for name in RECORD_COLUMNS if name != "status")
_REQUIRED_TEXT = frozenset({"request_id", "source_ip", "action", "outcome"})


def journal_directory(database: Database) -> Path | None:
    """Where ``database``'s journals live: beside a SQLite file; None for anything else."""
    url = database.engine.url
    if database.dialect != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".audit-journal")


def encode_events(events: Iterable[AuditEvent]) -> bytes:
    """JSON lines of the events' chained records (what :func:`decode_event` reads back)."""
    return b"".join(orjson.dumps(event.record()) + b"\n" for event in events)


class JournalLineError(ValueError):
    """A journal line that this code did not write."""


def decode_event(line: bytes) -> AuditEvent:
    """The event a journal line holds; JournalLineError if it is not a well-formed one."""
    if len(line) > MAX_LINE_BYTES:
        raise JournalLineError("line too long")
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise JournalLineError("not JSON") from exc
    if not isinstance(data, dict):
        raise JournalLineError("not an object")
    fields: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is None and name not in _REQUIRED_TEXT:
            fields[name] = None
        elif isinstance(value, str):
            fields[name] = value
        else:
            raise JournalLineError(f"bad {name}")
    status = data.get("status")
    moment = data.get("time")
    if not isinstance(status, int) or isinstance(status, bool) or not isinstance(moment, str):
        raise JournalLineError("bad status or time")
    try:
        when = datetime.fromisoformat(moment)
    except ValueError as exc:
        raise JournalLineError("bad time") from exc
    if when.tzinfo is None:
        raise JournalLineError("time without a zone")
    event = AuditEvent(time=when.astimezone(UTC), status=status, **fields)
    event.written = True
    return event


class AuditJournal:
    """One process's journal file, open for appending and locked while open."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor = descriptor
        self.size = 0

    @classmethod
    def create(cls, directory: Path) -> AuditJournal:
        """A new, empty journal in ``directory`` (made 0700 if missing), locked by this process.

        ConfigurationError if ``directory`` is a symbolic link or belongs to another user:
        whoever could write there could plant events for the next start to chain."""
        _private_directory(directory)
        path = directory / f"{os.getpid()}-{secrets.token_hex(6)}{JOURNAL_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        descriptor = os.open(path, flags, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise
        return cls(path, descriptor)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def directory(self) -> Path:
        return self.path.parent

    def append(self, data: bytes) -> int:
        """Append ``data`` (whole lines); return the journal's size after it."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._descriptor, view) :]
        except OSError:
            # A short write (a full disk) must not leave half a line for the next one to
            # follow: cut back to the last whole line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._descriptor, self.size)
            raise
        self.size += len(data)
        return self.size

    def close(self, *, remove: bool) -> None:
        """Close; ``remove`` deletes the file first (only when all of it is in the chain)."""
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._descriptor)


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = directory.lstat()
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        raise ConfigurationError(f"{directory} must be a directory, not a link: remove it")
    if found.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{directory} belongs to another user (uid {found.st_uid}): give it to the user "
            "that runs the server, or remove it"
        )
    if stat.S_IMODE(found.st_mode) != 0o700:
        directory.chmod(0o700)  # others must not read events nor add journals of their own


def record_progress(connection: Connection, journal: str, moved_bytes: int) -> None:
    """Inside the transaction that chains a journal's events up to ``moved_bytes``."""
    connection.execute(
        text(
            "INSERT INTO audit_journal_progress (journal, moved_bytes) VALUES (:j, :m) "
            "ON CONFLICT (journal) DO UPDATE SET moved_bytes = excluded.moved_bytes"
        ),
        {"j": journal, "m": moved_bytes},
    )


def forget_progress(connection: Connection, journals: Sequence[str]) -> None:
    """Drop the progress rows of journals whose files are gone."""
    for journal in journals:
        connection.execute(
            text("DELETE FROM audit_journal_progress WHERE journal = :j"), {"j": journal}
        )


def _moved_bytes(connection: Connection, journal: str) -> int:
    value = connection.execute(
        text("SELECT moved_bytes FROM audit_journal_progress WHERE journal = :j"), {"j": journal}
    ).scalar()
    return int(value or 0)


@dataclass(frozen=True, slots=True)
class Recovery:
    events: int  # events moved into the chain
    journals: int  # orphaned journals emptied and deleted
    unreadable: int  # journals kept aside (renamed *.unreadable) because a line was bad


def _lines(descriptor: int, start: int) -> Iterator[tuple[bytes, int]]:
    """Whole lines after byte ``start`` and the offset after each; a torn tail is dropped."""
    with os.fdopen(os.dup(descriptor), "rb") as handle:
        handle.seek(start)
        offset = start
        while True:
            line = handle.readline(MAX_LINE_BYTES + 2)
            if not line.endswith(b"\n"):
                if len(line) > MAX_LINE_BYTES:
                    yield line, offset + len(line)  # reported as too long by decode_event
                return  # end of file, or a line whose write never finished
            offset += len(line)
            yield line[:-1], offset


def _recover_one(
    database: Database, appender: Appender, path: Path, descriptor: int
) -> tuple[int, bool]:
    """Chain what ``path`` holds beyond its recorded progress; return (events, unreadable)."""
    moved = 0
    bad = False
    with database.write() as connection:
        start = _moved_bytes(connection, path.name)
        batch: list[AuditEvent] = []
        end = start
        for line, offset in _lines(descriptor, start):
            try:
                batch.append(decode_event(line))
            except JournalLineError as exc:
                log.error("audit journal line unreadable", journal=path.name, error=str(exc))
                bad = True
                break
            end = offset
            if len(batch) >= RECOVERY_BATCH:
                appender.append(connection, batch)
                moved += len(batch)
                batch = []
        appender.append(connection, batch)
        moved += len(batch)
        record_progress(connection, path.name, end)
    return moved, bad


def recover_orphans(
    database: Database, key: ChainKey, directory: Path | None, *, own: str | None = None
) -> Recovery:
    """Move the events of journals whose process ended into the chain, then delete them.

    The events of each journal go into a writer of their own, named after the journal in the
    registry and closed once they are in (``audit/store.py``): the dead process's chain of
    record, in effect, continued by the process that recovers it.

    Safe to run from several processes at once (each file is taken under its lock) and while
    other processes write their own journals (those are locked: skipped).
    """
    if directory is None or not directory.is_dir():
        return Recovery(0, 0, 0)
    events = journals = unreadable = 0
    for path in sorted(directory.glob("*" + JOURNAL_SUFFIX)):
        if path.name == own:
            continue
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, OSError):
            continue  # recovered by another process meanwhile, or not a plain file
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive and writing it
            if os.fstat(descriptor).st_nlink == 0:
                continue  # another process recovered and deleted it while we waited
            appender = Appender(key, f"{default_label()}, recovering journal {path.name}")
            try:
                moved, bad = _recover_one(database, appender, path, descriptor)
            finally:
                appender.close(database)
            events += moved
            if bad:
                # Kept for an operator to look at; the good lines before it are chained.
                path.rename(path.with_name(path.name + UNREADABLE_SUFFIX))
                unreadable += 1
            else:
                path.unlink()
            journals += 1
        finally:
            os.close(descriptor)
    _sweep_progress(database, directory)
    if events or unreadable:
        log.warning(
            "audit journals recovered", events=events, journals=journals, unreadable=unreadable
        )
    return Recovery(events, journals, unreadable)


@dataclass(frozen=True, slots=True)
class Pending:
    """What journals hold beyond the chain: events not chained yet, as one snapshot saw it."""

    events: int  # whole, well-formed lines past each journal's progress
    journals: int  # journals holding such lines
    unreadable: int  # journals with a line this code did not write, or kept aside for one


def pending_events(connection: Connection, directory: Path | None) -> Pending:
    """Count the journaled events the chain does not hold yet, as ``connection`` sees the
    chain's progress. Reads only: no lock is taken (a lock would make a starting server skip
    an orphan), nothing is chained (``strongroom audit verify`` changes nothing).

    A journal's events are chained by the process that writes it, or, once that process has
    ended, by the next server process to start.
    """
    if directory is None or not directory.is_dir():
        return Pending(0, 0, 0)
    rows = connection.execute(text("SELECT journal, moved_bytes FROM audit_journal_progress"))
    progress = {str(name): int(moved) for name, moved in rows}
    events = journals = unreadable = 0
    for path in sorted(directory.glob("*" + JOURNAL_SUFFIX)):
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # chained and removed meanwhile, or not a plain file
        try:
            found = 0
            for line, _offset in _lines(descriptor, progress.get(path.name, 0)):
                try:
                    decode_event(line)
                except JournalLineError:
                    unreadable += 1
                    break
                found += 1
        finally:
            os.close(descriptor)
        events += found
        journals += 1 if found else 0
    unreadable += len(list(directory.glob("*" + JOURNAL_SUFFIX + UNREADABLE_SUFFIX)))
    return Pending(events, journals, unreadable)


def _sweep_progress(database: Database, directory: Path) -> None:
    """Drop progress rows whose journal file no longer exists (it was fully chained)."""
    with database.read() as connection:
        names = connection.execute(text("SELECT journal FROM audit_journal_progress")).scalars()
        gone = [str(name) for name in names if not (directory / str(name)).exists()]
    if gone:
        with database.write() as connection:
            forget_progress(connection, gone)


def journal_sizes(directory: Path | None) -> dict[str, int]:
    """The size of each journal now in ``directory`` (bytes written so far)."""
    if directory is None or not directory.is_dir():
        return {}
    sizes: dict[str, int] = {}
    for path in directory.glob("*" + JOURNAL_SUFFIX):
        with contextlib.suppress(FileNotFoundError):  # chained and deleted meanwhile
            sizes[path.name] = path.stat().st_size
    return sizes


def chained_offsets(database: Database) -> dict[str, int]:
    """How far each journal is in the chain (a byte offset; absent: nothing of it yet)."""
    with database.read() as connection:
        rows = connection.execute(text("SELECT journal, moved_bytes FROM audit_journal_progress"))
        return {str(name): int(offset) for name, offset in rows}
