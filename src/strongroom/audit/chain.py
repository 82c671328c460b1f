"""The audit hash chain. Pure.

Each event's hash is SHA-256 over the previous event's hash, its sequence number and the
canonical JSON of its record. Changing, deleting or reordering any stored event breaks every
later link, which ``strongroom audit verify`` reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS_HASH = "0" * 64


def link_hash(prev_hash: str, seq: int, record: Mapping[str, Any]) -> str:
    """The hash of event ``seq`` whose predecessor hashed to ``prev_hash``."""
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\x00")
    digest.update(str(seq).encode("ascii"))
    digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    problem: str


def verify_links(
    rows: Iterable[tuple[int, str, str, Mapping[str, Any]]],
    *,
    start_hash: str = GENESIS_HASH,
    start_seq: int = 0,
) -> tuple[int, ChainBreak | None]:
    """Check ``(seq, prev_hash, hash, record)`` rows in order.

    Returns the number of events checked and the first break, if any.
    """
    expected_prev = start_hash
    expected_seq = start_seq + 1
    checked = 0
    for seq, prev_hash, stored_hash, record in rows:
        if seq != expected_seq:
            return checked, ChainBreak(seq, f"sequence gap: expected {expected_seq}")
        if prev_hash != expected_prev:
            return checked, ChainBreak(seq, "previous-hash link does not match")
        if link_hash(prev_hash, seq, record) != stored_hash:
            return checked, ChainBreak(seq, "event content does not match its hash")
        expected_prev = stored_hash
        expected_seq += 1
        checked += 1
    return checked, None
