"""Response shapes of the audit trail (SPEC section 7): events as ``GET /v1/audit`` reads them.

They forbid fields they do not name, so a body cannot drift from ``/openapi.json`` unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from strongroom.audit.event import isoformat_micro

# Microseconds, as the chain hashes it (audit/event.py), unlike the API's whole-second times.
EventTime = Annotated[
    AwareDatetime,
    PlainSerializer(isoformat_micro, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2025-01-31T12:00:00.123456Z"]}
    ),
]


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuditRecord(_Response):
    """One stored audit event. Tokens appear only as their keyed digest, values never."""

    seq: int = Field(description="its place in the hash chain")
    time: EventTime
    request_id: str
    source_ip: str
    access_id: str | None
    auth_method: str | None
    identity_arn: str | None
    token_digest: str | None
    action: str = Field(examples=["secret.read"])
    path: str | None
    status: int = Field(description="the HTTP status the request was answered with")
    outcome: Literal["success", "denied", "error", "failure"]
    reason: str | None


class AuditRecordList(_Response):
    """The newest events first."""

    events: list[AuditRecord]
