"""Reading the audit trail (SPEC sections 5 and 7): audit-rule ``read`` on ``/``, then the
query (``audit/store.query_events``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from strongroom.audit.schemas import AuditRecord, AuditRecordList
from strongroom.audit.store import query_events
from strongroom.audit.writer import AuditWriter
from strongroom.auth.tokens import Caller
from strongroom.db.engine import Database
from strongroom.db.work import DatabaseWork
from strongroom.rbac import Capability, RuleType
from strongroom.request_context import RequestContext


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """Which events to show, newest first (the request's bounds are checked by its route)."""

    since: datetime | None = None
    access_id: str | None = None
    path: str | None = None
    outcome: str | None = None
    limit: int = 100


class AuditService:
    def __init__(self, database: Database, writer: AuditWriter, work: DatabaseWork) -> None:
        """``work`` runs the query (``db/work.py``: on a thread within DB_TIMEOUT_SECONDS on
        PostgreSQL, never on the event loop)."""
        self._db = database
        self._writer = writer
        self._work = work

    async def recent(
        self, caller: Caller, filters: AuditFilters, context: RequestContext
    ) -> AuditRecordList:
        """The newest events matching ``filters``; ForbiddenError without audit read on
        ``/``. This process's journaled events are chained first; the other processes'
        follow within about 50 ms (docs/architecture.md, "Audit")."""
        context.event.path = "/"
        caller.require(Capability.READ, RuleType.AUDIT, "/", context.now)
        await self._writer.drain_journal()
        since = filters.since
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        events = await self._work.run(self._query, replace(filters, since=since))
        return AuditRecordList(events=[AuditRecord.model_validate(event) for event in events])

    def _query(self, filters: AuditFilters) -> list[dict[str, Any]]:
        with self._db.read() as connection:
            return query_events(
                connection,
                since=filters.since,
                access_id=filters.access_id,
                path=filters.path,
                outcome=filters.outcome,
                limit=filters.limit,
            )
