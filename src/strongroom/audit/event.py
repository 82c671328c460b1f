"""The audit event: what one request did, and how it ended (SPEC section 7).

Events never carry a token, an access key or a secret value. A token appears only as its keyed
digest, so an operator holding a token can find its events without the trail holding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(slots=True)
class AuditEvent:
    """One request's event. Filled in as the request proceeds; written once at its end."""

    time: datetime
    request_id: str
    source_ip: str
    action: str
    path: str | None = None
    access_id: str | None = None
    auth_method: str | None = None
    identity_arn: str | None = None
    token_digest: str | None = None
    status: int = 0
    outcome: str = ""
    reason: str | None = None
    # Set once the event is stored: its transaction committed, or its journal write returned.
    written: bool = field(default=False, compare=False)

    def finish(self, status: int, reason: str | None = None) -> None:
        """Record the response status; the outcome follows from it unless already set (the
        Vault surface sets the native answer's outcome: a failed login is "denied" though
        Vault answers 400)."""
        self.status = status
        if not self.outcome:
            self.outcome = outcome_for_status(status)
        if reason and not self.reason:
            self.reason = reason[:2000]

    def reopen(self) -> None:
        """Forget the status and outcome of a :meth:`finish` whose event was then not stored
        (a sink failed, the transaction rolled back): the answer that follows (503) finishes
        it again, and its event must not claim the success that never committed."""
        self.status = 0
        self.outcome = ""

    def record(self) -> dict[str, Any]:
        """The fields that the hash chain covers, in a stable JSON-ready form."""
        return {
            "time": isoformat_micro(self.time),
            "request_id": self.request_id,
            "source_ip": self.source_ip,
            "access_id": self.access_id,
            "auth_method": self.auth_method,
            "identity_arn": self.identity_arn,
            "token_digest": self.token_digest,
            "action": self.action,
            "path": self.path,
            "status": self.status,
            "outcome": self.outcome,
            "reason": self.reason,
        }


def outcome_for_status(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status < 500:
        return "error"
    return "failure"


def isoformat_micro(moment: datetime) -> str:
    """Microsecond ISO form in UTC: what the chain hashes, identical after a database trip.

    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` writes it for
    years from 1000 on, at a third of its cost (every audit event is hashed with it)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
