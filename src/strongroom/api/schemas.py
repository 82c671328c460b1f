"""The API's own response shapes: the error body of every native failure, health, readiness.

    Error   {"error": ErrorCode, "message": text}: every 4xx and 5xx of the native API, from
            the error tree (strongroom.errors), validation (400 InvalidRequest: never
            FastAPI's 422), routing (404, 405) and the request envelope (413, 503, 500)

The Vault-compatible routes answer Vault's shape instead (strongroom.vault.schemas.VaultErrors).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """The ``error`` field: stable, for programs to test (the message is for people)."""

    INVALID_REQUEST = "InvalidRequest"
    INVALID_NAME = "InvalidName"
    RULE_TOO_COMPLEX = "RuleTooComplex"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    CONFLICT = "Conflict"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    TOO_MANY_REQUESTS = "TooManyRequests"
    INTERNAL_ERROR = "InternalError"
    UPSTREAM_UNAVAILABLE = "UpstreamUnavailable"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(_Response):
    """Why a request failed. The precise reason goes to the audit trail, not here."""

    error: ErrorCode
    message: str = Field(examples=["a valid token is required"])


class Health(_Response):
    """The process answers."""

    status: Literal["ok"]


class ReadinessChecks(_Response):
    database: str = Field(description='"ok", or "unavailable: <error type>"')
    migrations: str = Field(description='"ok", "pending" or "unknown"')
    keys: str = Field(
        description='"ok"; "unavailable: …" when a newer data key cannot be unwrapped with '
        'this server\'s master key; "unknown" without the database'
    )


class Readiness(_Response):
    """Whether this server can serve: its database, migrations and data keys."""

    status: Literal["ok", "unavailable"]
    checks: ReadinessChecks
