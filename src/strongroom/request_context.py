"""What every service entry point is handed about the request it serves.

The request envelope (``api/middleware.py``) opens one audit event per request; a service fills
in what it learns (the path it acted on, the caller's identity) and, for a change, writes the
event in the change's own transaction. ``now`` is the request's time, the moment every rule's
expiry and every token's lifetime is judged at: the event's own time, so that what the audit
trail records and what was decided agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from strongroom.audit.event import AuditEvent


@dataclass(frozen=True, slots=True)
class RequestContext:
    event: AuditEvent
    now: datetime

    @classmethod
    def of(cls, event: AuditEvent) -> RequestContext:
        """The context of the request whose audit event is ``event`` (its time is ``now``)."""
        return cls(event, event.time)
