"""The two queries every secret read runs, at driver level.

A read needs the cache ``generation`` and one item-version row. Each worker runs them on a
:class:`~strongroom.db.held.HeldConnection` used only from its event-loop thread (about 6.5 µs
a statement against 87 µs through SQLAlchemy); everything else stays on SQLAlchemy Core.

Autocommit is safe here: each statement is a single read that needs no snapshot shared with
another, and both tolerate a concurrent writer (the generation check only ever makes a cache
fresher).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from strongroom.db import driver
from strongroom.db.held import HeldConnection

_GENERATION = "SELECT value FROM counters WHERE name = 'generation'"
_NEWEST = (
    "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
    "item_versions.created_at FROM items JOIN item_versions ON item_versions.item_id = items.id "
    "WHERE items.name = {p} ORDER BY item_versions.version DESC LIMIT 1"
)
_EXACT = (
    "SELECT items.id, items.name, item_versions.version, item_versions.ciphertext, "
    "item_versions.created_at FROM items JOIN item_versions ON item_versions.item_id = items.id "
    "WHERE items.name = {p} AND item_versions.version = {p}"
)

VersionRow = tuple[int, str, int, bytes, datetime]


class HotReader:
    """Driver-level reads for the request hot path; one instance per worker process."""

    def __init__(self, engine: Engine) -> None:
        self._held = HeldConnection(engine, purpose="hot read")
        placeholder = self._held.placeholder
        self._newest = _NEWEST.format(p=placeholder)
        self._exact = _EXACT.format(p=placeholder)

    def generation(self) -> int:
        """The cache generation counter (bumped by every RBAC or token change)."""
        return int(self._held.rows(_GENERATION)[0][0])

    def version_row(self, name: str, version: int | None) -> VersionRow | None:
        """``(item_id, name, version, ciphertext, created_at)`` of the newest or given version."""
        rows = (
            self._held.rows(self._newest, (name,))
            if version is None
            else self._held.rows(self._exact, (name, version))
        )
        if not rows:
            return None
        item_id, item_name, number, ciphertext, created_at = rows[0]
        return item_id, item_name, number, bytes(ciphertext), driver.loaded_time(created_at)

    def close(self) -> None:
        self._held.close()
