"""Verification of the audit chains: the registry, every writer's chain, the legacy anchor.

:func:`verify_chain` reads (in the caller's snapshot) and reports the first break; the formats
it checks, and what it can and cannot detect, are in ``audit/chain.py``. It writes nothing.

Order of the checks: the anchor of the legacy chain (its seal), the registry (its links, that
its entries make sense: ``legacy`` first, each writer opened once and closed at most once, and
that it ends on its head), the heads (one per registered writer, none other; a closed writer's
where its close entry says), then every writer's events in ``(writer, writer_seq)`` order, each
chain from its registry entry to its head.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from strongroom.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    ChainKey,
    LinkFunction,
    entry_record,
    same_link,
    unkeyed_link,
    verify_links,
)
from strongroom.audit.store import (
    LEGACY_WRITER,
    REGISTRY,
    Anchor,
    read_anchor,
    record_of,
)
from strongroom.db.tables import audit_events, audit_heads, audit_registry

NOT_ANCHORED = (
    "the chain is not anchored yet: start the server once (with the master key) after the upgrade"
)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int  # events whose links were checked
    broken: ChainBreak | None
    unkeyed: int = 0  # events of the legacy chain before its anchor, linked unkeyed
    anchored_at: str | None = None  # when the keyed chain was anchored
    writers: int = 0  # writers the registry holds, the legacy chain included
    open_writers: int = 0  # of them, not closed: their processes run (or were killed)
    entries: int = 0  # registry entries checked


@dataclass(slots=True)
class _Writer:
    start: str  # the link its first event follows
    end: tuple[int, str] | None = None  # where its close entry (or the legacy entry) ends it


@dataclass(frozen=True, slots=True)
class _Head:
    seq: int
    hash: str
    closed: bool


class _Failed(Exception):
    """Carries the first break out of the walk (internal)."""

    def __init__(self, broken: ChainBreak) -> None:
        self.broken = broken


def verify_chain(connection: Connection, key: ChainKey | None, batch: int = 5000) -> VerifyResult:
    """Walk the registry and every writer's chain as ``connection`` sees them; report the
    first break.

    ``key`` is None for a database without data keys yet (nothing can have been written).
    Run it in one consistent snapshot (``Database.snapshot``): events are appended while it
    reads, and heads read in one snapshot with events read in another disagree. Writes nothing.
    """
    heads = {
        int(row.id): _Head(int(row.seq), str(row.hash), bool(row.closed))
        for row in connection.execute(select(audit_heads))
    }
    registry_head = heads.pop(REGISTRY, None)
    if key is None:
        if _count(connection, audit_events) == 0:
            return VerifyResult(0, None)
        return VerifyResult(0, ChainBreak(0, "events are stored but no data keys"))
    anchor = read_anchor(connection)
    state = _Walk()

    def result(broken: ChainBreak | None) -> VerifyResult:
        return VerifyResult(
            state.checked,
            broken,
            unkeyed=anchor.seq if anchor is not None else 0,
            anchored_at=anchor.anchored_at if anchor is not None else None,
            writers=len(state.writers),
            open_writers=sum(1 for w in state.writers.values() if w.end is None),
            entries=state.entries,
        )

    try:
        _check_anchor(connection, key, anchor, registry_head)
        if anchor is None or anchor.anchored_at is None:
            return result(None)  # nothing written yet: nothing to protect
        if registry_head is None:
            raise _Failed(ChainBreak(0, "the head of the writers' registry is missing"))
        if registry_head.seq == 0:
            # Upgraded to per-writer chains, not started since: writer 1 is not closed yet.
            if _count(connection, audit_events) == 0:
                return result(None)
            raise _Failed(ChainBreak(0, NOT_ANCHORED))
        _check_registry(_registry_rows(connection, batch), key, registry_head, state)
        _check_heads(heads, state.writers)
        _check_events(_event_rows(connection, batch), key, anchor, heads, state)
    except _Failed as failed:
        return result(failed.broken)
    return result(None)


def _count(connection: Connection, table: Any) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@dataclass(slots=True)
class _Walk:
    """What the walk found so far (reported even when it stops at a break)."""

    checked: int = 0
    entries: int = 0
    writers: dict[int, _Writer] = field(default_factory=dict)


def _check_anchor(
    connection: Connection, key: ChainKey, anchor: Anchor | None, registry: _Head | None
) -> None:
    # Removing or moving the anchor would let forged unkeyed links pass as the old chain.
    if anchor is None:
        raise _Failed(ChainBreak(0, "the anchor of the keyed chain is missing", LEGACY_WRITER))
    if anchor.seal is None or anchor.anchored_at is None:
        written = (registry is not None and registry.seq > 0) or _count(
            connection, audit_events
        ) > 0
        if not written:
            return
        raise _Failed(ChainBreak(anchor.seq, NOT_ANCHORED, LEGACY_WRITER))
    if not same_link(key.seal(anchor.seq, anchor.hash, anchor.anchored_at), anchor.seal):
        raise _Failed(ChainBreak(anchor.seq, "the anchor does not match its seal", LEGACY_WRITER))


# -- the registry ---------------------------------------------------------------------------


def _registry_rows(connection: Connection, batch: int) -> Iterator[Any]:
    after = 0
    while True:
        rows = connection.execute(
            select(audit_registry)
            .where(audit_registry.c.seq > after)
            .order_by(audit_registry.c.seq)
            .limit(batch)
        ).all()
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].seq


def _entry_of(row: Any) -> dict[str, Any]:
    return entry_record(row.kind, row.writer, row.time, row.label, row.end_seq, row.end_hash)


def _check_registry(rows: Iterable[Any], key: ChainKey, head: _Head, state: _Walk) -> None:
    """The registry's links, the sense of its entries, its end: fills ``state.writers``."""
    last_seq, last_hash = 0, GENESIS_HASH

    def link(prev_hash: str, position: int, row: Any) -> str:
        return key.entry(position, prev_hash, _entry_of(row))

    for row in rows:
        # One entry at a time: what it says about its writer is read only once it is proven.
        _, broken = verify_links(
            [(int(row.seq), row.prev_hash, row.hash, row)],
            link,
            start_hash=last_hash,
            start_seq=last_seq,
        )
        if broken is not None:
            raise _Failed(ChainBreak(0, f"registry entry {broken.seq}: {broken.problem}"))
        problem = _entry_problem(row, state.writers)
        if problem is not None:
            raise _Failed(ChainBreak(0, f"registry entry {row.seq}: {problem}"))
        last_seq, last_hash = int(row.seq), row.hash
        state.entries += 1
    if last_seq > head.seq:
        raise _Failed(ChainBreak(0, "registry entries follow the head of the registry"))
    if last_seq != head.seq or not same_link(last_hash, head.hash):
        raise _Failed(ChainBreak(0, "registry entries are missing at the end of the registry"))


def _entry_problem(row: Any, writers: dict[int, _Writer]) -> str | None:
    """Why a correctly linked entry still cannot be (a bug, not an attack: links hold)."""
    writer = int(row.writer)
    end = (int(row.end_seq), str(row.end_hash)) if row.end_seq is not None else None
    if int(row.seq) == 1 or row.kind == "legacy":
        if int(row.seq) != 1 or row.kind != "legacy" or writer != LEGACY_WRITER or end is None:
            return "the registry must begin with the end of the legacy chain, and only there"
        writers[writer] = _Writer(GENESIS_HASH, end)
        return None
    if row.kind == "open":
        if writer in writers or writer in (REGISTRY, LEGACY_WRITER):
            return f"writer {writer} is opened twice"
        writers[writer] = _Writer(str(row.hash))
        return None
    if row.kind == "close":
        known = writers.get(writer)
        if known is None or known.end is not None or end is None:
            return f"writer {writer} is closed without being open"
        known.end = end
        return None
    return f"unknown kind of entry {row.kind!r}"


def _check_heads(heads: dict[int, _Head], writers: dict[int, _Writer]) -> None:
    """One head per registered writer and no other; a closed writer's where its entry ends it."""
    unregistered = sorted(heads.keys() - writers.keys())
    if unregistered:
        writer = unregistered[0]
        raise _Failed(ChainBreak(0, f"writer {writer} has a head but is not registered", writer))
    for writer, known in writers.items():
        head = heads.get(writer)
        if head is None:
            raise _Failed(ChainBreak(0, f"the head of writer {writer} is missing", writer))
        if known.end is not None and (
            head.seq != known.end[0] or not same_link(head.hash, known.end[1])
        ):
            raise _Failed(
                ChainBreak(0, f"writer {writer} moved after the registry closed it", writer)
            )
        if head.closed != (known.end is not None):
            raise _Failed(
                ChainBreak(
                    0,
                    f"writer {writer} is marked "
                    f"{'closed' if head.closed else 'open'} against the registry",
                    writer,
                )
            )


# -- the writers' events --------------------------------------------------------------------


def _event_rows(connection: Connection, batch: int) -> Iterator[Any]:
    """Every event in ``(writer, writer_seq)`` order (the unique index), ``batch`` at a time."""
    query = select(audit_events).order_by(audit_events.c.writer, audit_events.c.writer_seq)
    after: tuple[int, int] | None = None
    while True:
        page = (
            query
            if after is None
            else query.where(
                tuple_(audit_events.c.writer, audit_events.c.writer_seq) > tuple_(*after)
            )
        )
        rows = connection.execute(page.limit(batch)).all()
        yield from rows
        if len(rows) < batch:
            return
        after = (int(rows[-1].writer), int(rows[-1].writer_seq))


def _check_events(
    rows: Iterable[Any],
    key: ChainKey,
    anchor: Anchor,
    heads: dict[int, _Head],
    state: _Walk,
) -> None:
    seen: set[int] = set()
    for writer, group in groupby(rows, key=lambda row: int(row.writer)):
        seen.add(writer)
        _check_writer(writer, group, state.writers.get(writer), heads, key, anchor, state)
    for writer in state.writers.keys() - seen:
        _check_writer(writer, iter(()), state.writers[writer], heads, key, anchor, state)


def _check_writer(
    writer: int,
    rows: Iterator[Any],
    known: _Writer | None,
    heads: dict[int, _Head],
    key: ChainKey,
    anchor: Anchor,
    state: _Walk,
) -> None:
    """One writer's chain, from its start to its head."""
    if known is None:
        first = next(rows)
        raise _Failed(
            ChainBreak(first.seq, f"events of writer {writer}, which is not registered", writer)
        )
    head = heads[writer]  # every registered writer has one (_check_heads)
    last = _Last(0, known.start, 0)

    def tracked(phase: Iterable[Any]) -> Iterator[tuple[int, str, str, Any]]:
        for row in phase:
            if writer == LEGACY_WRITER and int(row.seq) != int(row.writer_seq):
                raise _Failed(ChainBreak(int(row.seq), "a legacy event's id was changed", writer))
            last.event = int(row.seq)
            yield int(row.writer_seq), row.prev_hash, row.hash, row

    def writer_link(prev_hash: str, position: int, row: Any) -> str:
        return key.writer_link(writer, position, int(row.seq), prev_hash, record_of(row))

    def legacy_link(prev_hash: str, position: int, row: Any) -> str:
        link = unkeyed_link if position <= anchor.seq else key.link
        return link(prev_hash, position, record_of(row))

    if writer == LEGACY_WRITER:
        # The unkeyed part must end on the anchor: up to it, then after it.
        rows_list: Sequence[Iterator[Any]] = _split_at(rows, anchor.seq)
        for index, phase in enumerate(rows_list):
            _verify_phase(tracked(phase), legacy_link, last, state, writer)
            ends_on_anchor = last.position == anchor.seq and same_link(last.hash, anchor.hash)
            if index == 0 and not ends_on_anchor:
                raise _Failed(
                    ChainBreak(anchor.seq, "the unkeyed chain does not end on its anchor", writer)
                )
    else:
        _verify_phase(tracked(rows), writer_link, last, state, writer)
    if last.position > head.seq:
        raise _Failed(ChainBreak(last.event, f"events follow the head of writer {writer}", writer))
    if last.position != head.seq or not same_link(last.hash, head.hash):
        raise _Failed(
            ChainBreak(
                last.event, f"events are missing at the end of writer {writer}'s chain", writer
            )
        )


@dataclass(slots=True)
class _Last:
    position: int
    hash: str
    event: int  # its global id (0: none yet)


def _verify_phase(
    rows: Iterator[tuple[int, str, str, Any]],
    link: LinkFunction,
    last: _Last,
    state: _Walk,
    writer: int,
) -> None:
    def remembered() -> Iterator[tuple[int, str, str, Any]]:
        for item in rows:
            yield item
            # Reached only once verify_links asks for the next row: this one was intact.
            last.position, last.hash = item[0], item[2]

    count, broken = verify_links(remembered(), link, start_hash=last.hash, start_seq=last.position)
    state.checked += count
    if broken is not None:
        raise _Failed(ChainBreak(last.event, broken.problem, writer))


def _split_at(rows: Iterator[Any], position: int) -> list[Iterator[Any]]:
    """``rows`` (in order) as two iterators: positions up to ``position``, then the rest."""
    held: list[Any] = []

    def first() -> Iterator[Any]:
        for row in rows:
            if int(row.writer_seq) > position:
                held.append(row)
                return
            yield row

    def second() -> Iterator[Any]:
        yield from held
        yield from rows

    return [first(), second()]
