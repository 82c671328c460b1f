"""The audit chains' formats: keyed links, the registry of writers, the anchor, verification.
Pure.

**Writers.** Every process that stores audit events appends them to chains of its own: a
*writer* is one such chain, opened by a process when it first needs one (a process whose
appends overlap opens more than one) and closed when the process stops. Each writer's events
are linked one after the other; the events of different writers are not linked to each other,
so appends of different processes (workers, login processes, replicas) never wait for each
other. What ties the writers together is the **registry**, one more chain, keyed as well, that
records every writer when it opens, and where its chain ends when it closes.

An event of writer ``w`` at position ``n`` in its chain (``n`` = 1, 2, …), stored as event
``seq`` (the global event id that listings order by), is stored with ``prev_hash`` (the link
of position ``n - 1``, or for ``n = 1`` the link of the registry entry that opened ``w``) and
``hash``, its own link::

    link(w, n) = hex(HMAC-SHA256(K, b"strongroom:audit-link:v2" 0x00 w 0x00 n 0x00 prev_hash
                                    0x00 seq 0x00 body))

where the numbers are ASCII decimal, ``prev_hash`` 64 ASCII hex digits, and ``body`` the record
(:meth:`AuditEvent.record`) as JSON with sorted keys, no spaces, in UTF-8 (orjson,
``OPT_SORT_KEYS``). ``body`` never holds a raw NUL (JSON escapes it) and the fields before it
have fixed alphabets, so the input is unambiguous. ``K`` is the audit chain key
(``strongroom.db.keys``): derived from a data key that only the master key (or KMS key)
unwraps, so write access to the database alone cannot compute a link. Changing, removing,
inserting or reordering a stored event breaks its link or the next one; moving it to another
writer or giving it another ``seq`` breaks its own.

Registry entry ``r`` (``r`` = 1, 2, …) is linked the same way, after entry ``r - 1`` (entry 1
after ``GENESIS_HASH``)::

    entry(r) = hex(HMAC-SHA256(K, b"strongroom:audit-registry:v1" 0x00 prev_hash 0x00 r 0x00
                                  body))

with ``body`` the JSON (as above) of ``{"kind", "writer", "time", "label", "end_seq",
"end_hash"}``. Kinds: ``legacy`` (entry 1 only: where the single chain of older versions,
writer 1, ends), ``open`` (writer ``w`` opens, once: ``w`` is a random id of 62 bits, and
``label`` says which process), and ``close`` (writer ``w`` appends nothing more; its chain ends
at position ``end_seq`` with link ``end_hash``). Times are written as
:func:`~strongroom.audit.event.isoformat_micro` writes them.

**Writer 1, the legacy chain.** Up to schema revision 0003 every event went into one chain.
Upgrading keeps it as writer 1, which no one appends to any more: its events keep the links
they were written with (position = ``seq``)::

    link_v1(seq)      = hex(HMAC-SHA256(K, b"strongroom:audit-link:v1" 0x00 prev_hash 0x00 seq
                                           0x00 body))
    unkeyed_link(seq) = hex(SHA-256(prev_hash 0x00 seq 0x00 body))

The unkeyed links are those of chains written before the key existed (up to revision 0002).
Upgrading to 0003 recorded that chain's head as the **anchor**; the first server to start
seals it with the key::

    seal = hex(HMAC-SHA256(K, b"strongroom:audit-anchor:v1" 0x00 seq 0x00 hash 0x00 anchored_at))

(``anchored_at`` as :func:`~strongroom.audit.event.isoformat_micro` writes it). Events up to
the anchor's ``seq`` carry unkeyed links and must end on the anchor's ``hash``; later events
of writer 1 carry ``link_v1`` and the first of them links to that hash. The same first start
writes the registry's first entry, ``legacy``, with writer 1's head: from then on writer 1 is
closed like any other. A database created at revision 0004 or later has an empty writer 1
(anchored at ``(0, GENESIS_HASH)``).

**What verification detects** (``strongroom audit verify``, with the key), for an attacker
who can write to the database but does not hold the master key (or KMS key):

- any change to a stored event or registry entry, any event or entry inserted, any reordered;
- any event deleted from the middle of a writer's chain, or from the end of a closed writer
  (its close entry names the end);
- the newest events of an open writer deleted, unless the attacker also sets its head
  (``audit_heads``) back to the link before them;
- a whole writer removed (its events, its head), unless its ``open`` entry is among the
  newest registry entries and those are removed too, with the registry's head set back;
- events of a writer the registry does not know, a writer without a head, a closed writer
  whose head moved;
- the unkeyed part of the legacy chain changed, the anchor moved or its seal removed.

**What it cannot detect**, because nothing outside the database remembers it: the newest
events of a writer still open (its process runs, or stopped without closing it: a crash)
deleted together with its head set back, and the newest registry entries deleted together
with the registry's head set back, which removes the writers opened last with all their
events, or reopens the writers closed last (whose newest events can then be deleted in turn).
This is what the single chain of older versions could not detect either (its newest events
with its head set back). Nor that the whole database was rewritten unkeyed with the anchor
and registry removed, which the next start anchors again: ``strongroom audit verify`` prints
when the chain was anchored, and how many writers the registry holds, so that both show. A
copy kept elsewhere (``AUDIT_FILE`` shipped off the host) shows everything.

A writer that disappears without closing (its process was killed) is not tampering: its chain
is intact up to its head, and verification counts it as open.

The known-answer vectors are in ``tests/audit/test_chain.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS_HASH = "0" * 64
KEY_SIZE = 32
LINK_PREFIX = b"strongroom:audit-link:v1\x00"
WRITER_LINK_PREFIX = b"strongroom:audit-link:v2\x00"
REGISTRY_PREFIX = b"strongroom:audit-registry:v1\x00"
ANCHOR_PREFIX = b"strongroom:audit-anchor:v1\x00"

Record = Mapping[str, Any]
# (prev_hash, position, what the link covers besides them) -> link
LinkFunction = Callable[[str, int, Any], str]


def _body(prev_hash: str, seq: int, record: Record) -> bytes:
    return b"%s\x00%d\x00%s" % (
        prev_hash.encode("ascii"),
        seq,
        orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
    )


class ChainKey:
    """The audit chain's HMAC key. Its repr hides the key."""

    __slots__ = ("_anchor", "_link", "_registry", "_writer_link")

    def __init__(self, key: bytes) -> None:
        """Raises ValueError unless ``key`` is 32 bytes."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"an audit chain key is exactly {KEY_SIZE} bytes")
        # Each prefix is absorbed once; a link copies that state (cheaper than re-keying).
        self._link = hmac.new(key, LINK_PREFIX, hashlib.sha256)
        self._writer_link = hmac.new(key, WRITER_LINK_PREFIX, hashlib.sha256)
        self._registry = hmac.new(key, REGISTRY_PREFIX, hashlib.sha256)
        self._anchor = hmac.new(key, ANCHOR_PREFIX, hashlib.sha256)

    def link(self, prev_hash: str, seq: int, record: Record) -> str:
        """The legacy chain's keyed link (``link_v1``) of event ``seq`` whose predecessor's
        link is ``prev_hash`` (verified, no longer written)."""
        mac = self._link.copy()
        mac.update(_body(prev_hash, seq, record))
        return mac.hexdigest()

    def writer_link(
        self, writer: int, position: int, seq: int, prev_hash: str, record: Record
    ) -> str:
        """The link of event ``seq``, at ``position`` in writer ``writer``'s chain."""
        mac = self._writer_link.copy()
        mac.update(b"%d\x00%d\x00" % (writer, position))
        mac.update(_body(prev_hash, seq, record))
        return mac.hexdigest()

    def entry(self, position: int, prev_hash: str, entry: Record) -> str:
        """The link of registry entry ``position`` (its fields: :func:`entry_record`)."""
        mac = self._registry.copy()
        mac.update(_body(prev_hash, position, entry))
        return mac.hexdigest()

    def seal(self, seq: int, hash_: str, anchored_at: str) -> str:
        """The seal of an anchor: the unkeyed chain ends at event ``seq`` with link ``hash_``."""
        mac = self._anchor.copy()
        mac.update(b"%d\x00%s\x00%s" % (seq, hash_.encode("ascii"), anchored_at.encode("ascii")))
        return mac.hexdigest()

    def __repr__(self) -> str:
        return "ChainKey(key=<hidden>)"


def unkeyed_link(prev_hash: str, seq: int, record: Record) -> str:
    """The SHA-256 link of chains written before the key (verified, never written)."""
    return hashlib.sha256(_body(prev_hash, seq, record)).hexdigest()


def same_link(a: str, b: str) -> bool:
    """Compare two links in constant time (a forger learns nothing from the timing)."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def entry_record(
    kind: str,
    writer: int,
    time: str,
    label: str | None = None,
    end_seq: int | None = None,
    end_hash: str | None = None,
) -> dict[str, Any]:
    """The fields of a registry entry that its link covers."""
    return {
        "kind": kind,
        "writer": writer,
        "time": time,
        "label": label,
        "end_seq": end_seq,
        "end_hash": end_hash,
    }


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where verification stopped: the event ``seq`` (0 when the break is not in an event)
    of writer ``writer`` (None: in the registry or the anchor), and why."""

    seq: int
    problem: str
    writer: int | None = None


def verify_links(
    rows: Iterable[tuple[int, str, str, Any]],
    link: LinkFunction,
    *,
    start_hash: str = GENESIS_HASH,
    start_seq: int = 0,
) -> tuple[int, ChainBreak | None]:
    """Check ``(position, prev_hash, hash, covered)`` rows in order, each against ``link``;
    positions must follow ``start_seq`` without a gap, the first link ``start_hash``.

    Returns the number of rows checked and the first break (at the row's position), if any.
    """
    expected_prev = start_hash
    expected_seq = start_seq + 1
    checked = 0
    for seq, prev_hash, stored_hash, record in rows:
        if seq != expected_seq:
            return checked, ChainBreak(seq, f"sequence gap: expected {expected_seq}")
        if not same_link(prev_hash, expected_prev):
            return checked, ChainBreak(seq, "previous-hash link does not match")
        if not same_link(link(prev_hash, seq, record), stored_hash):
            return checked, ChainBreak(seq, "event content does not match its link")
        expected_prev = stored_hash
        expected_seq += 1
        checked += 1
    return checked, None
