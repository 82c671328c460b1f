"""The audit chain's format: keyed links, the anchor that ends the unkeyed chain, verification.
Pure.

Each event is stored with ``prev_hash`` (the previous event's link, or ``GENESIS_HASH``) and
``hash``, its own link::

    link(seq) = hex(HMAC-SHA256(K, b"strongroom:audit-link:v1" 0x00 prev_hash 0x00 seq 0x00 body))

where ``prev_hash`` is 64 ASCII hex digits, ``seq`` the event's sequence number in ASCII
decimal, and ``body`` the record (:meth:`AuditEvent.record`) as JSON with sorted keys, no
spaces, in UTF-8 (orjson, ``OPT_SORT_KEYS``). ``body`` never holds a raw NUL (JSON escapes it)
and the fields before it have fixed alphabets, so the input is unambiguous. ``K`` is the audit
chain key (``strongroom.db.keys``): derived from a data key that only the master key (or KMS
key) unwraps, so write access to the database alone cannot compute a link. Changing, removing,
inserting or reordering a stored event breaks its link or the next one.

Chains written before the key existed (up to schema revision 0002) used an unkeyed link::

    unkeyed_link(seq) = hex(SHA-256(prev_hash 0x00 seq 0x00 body))

Such a chain is kept, not discarded. Upgrading records its head as the **anchor**; the first
server to start seals it with the key::

    seal = hex(HMAC-SHA256(K, b"strongroom:audit-anchor:v1" 0x00 seq 0x00 hash 0x00 anchored_at))

(``anchored_at`` as :func:`~strongroom.audit.event.isoformat_micro` writes it). Events up to
the anchor's ``seq`` carry unkeyed links and must end on the anchor's ``hash``; every later
event is keyed and the first of them links to that hash. So after the upgrade the old events
cannot be changed either (their last link is sealed), and the boundary cannot be moved (the
seal covers it). A database created after the upgrade is anchored at ``(0, GENESIS_HASH)``.

What no key held by the server can show, because nothing outside the database remembers it:
that the newest events were deleted (the head set back to an earlier link), and that the whole
chain was rewritten unkeyed with the anchor removed, which the next start anchors again.
``strongroom audit verify`` prints where and when the keyed chain was anchored so that the
second shows; a copy kept elsewhere (``AUDIT_FILE`` shipped off the host) shows both.

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
ANCHOR_PREFIX = b"strongroom:audit-anchor:v1\x00"

Record = Mapping[str, Any]
LinkFunction = Callable[[str, int, Record], str]


def _body(prev_hash: str, seq: int, record: Record) -> bytes:
    return b"%s\x00%d\x00%s" % (
        prev_hash.encode("ascii"),
        seq,
        orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
    )


class ChainKey:
    """The audit chain's HMAC key. Its repr hides the key."""

    __slots__ = ("_anchor", "_link")

    def __init__(self, key: bytes) -> None:
        """Raises ValueError unless ``key`` is 32 bytes."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"an audit chain key is exactly {KEY_SIZE} bytes")
        # Each prefix is absorbed once; a link copies that state (cheaper than re-keying).
        self._link = hmac.new(key, LINK_PREFIX, hashlib.sha256)
        self._anchor = hmac.new(key, ANCHOR_PREFIX, hashlib.sha256)

    def link(self, prev_hash: str, seq: int, record: Record) -> str:
        """The keyed link of event ``seq`` whose predecessor's link is ``prev_hash``."""
        mac = self._link.copy()
        mac.update(_body(prev_hash, seq, record))
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


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    problem: str


def verify_links(
    rows: Iterable[tuple[int, str, str, Record]],
    link: LinkFunction,
    *,
    start_hash: str = GENESIS_HASH,
    start_seq: int = 0,
) -> tuple[int, ChainBreak | None]:
    """Check ``(seq, prev_hash, hash, record)`` rows in order, each against ``link``.

    Returns the number of events checked and the first break, if any.
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
