"""The one error tree of Strongroom.

Every failure a client can see is a :class:`StrongroomError` carrying an HTTP status, a stable
``code`` (the ``error`` field of the JSON body) and a ``message`` that is safe to show. Anything
sensitive or diagnostic goes in ``reason``, which reaches the audit trail and the server log but
never the client.

    StrongroomError
    ├── InvalidRequestError        400 InvalidRequest    malformed input
    │   ├── InvalidNameError       400 InvalidName       a path or name outside SPEC section 2
    │   └── RuleTooComplexError    400 RuleTooComplex    a no-escalation check beyond its budget
    ├── AuthenticationDenied       401 AuthenticationFailed   every failed login, one body
    ├── UnauthorizedError          401 Unauthorized      unknown, expired or revoked token
    ├── ForbiddenError             403 Forbidden         the rules do not allow it
    ├── NotFoundError              404 NotFound
    ├── ConflictError              409 Conflict
    ├── PayloadTooLargeError       413 PayloadTooLarge
    ├── RateLimitedError           429 TooManyRequests   carries retry_after seconds
    ├── UpstreamUnavailableError   502 UpstreamUnavailable   STS down, slow or broken
    └── ServiceUnavailableError    503 ServiceUnavailable    audit cannot be written, not ready
"""

from __future__ import annotations


class StrongroomError(Exception):
    """Base of every error a request can end with."""

    status: int = 500
    code: str = "InternalError"
    default_message: str = "internal error"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        self.message = message or self.default_message
        # reason: the precise cause, for the audit trail and the server log only.
        self.reason = reason or self.message
        super().__init__(self.message)


class InvalidRequestError(StrongroomError):
    status = 400
    code = "InvalidRequest"
    default_message = "the request is malformed"


class InvalidNameError(InvalidRequestError):
    code = "InvalidName"
    default_message = "the name is not valid"


class RuleTooComplexError(InvalidRequestError):
    """A change whose no-escalation check would cost more than its fixed budget (SPEC
    section 4): refused, never decided late, so that no rule set can stall the server."""

    code = "RuleTooComplex"
    default_message = (
        "the rules involved are too complex to check within the server's budget; "
        "use fewer or simpler patterns (fewer '*', '+' and {{claim}} templates)"
    )


class AuthenticationDenied(StrongroomError):
    """A failed login. The client always sees the same body; ``reason`` says why."""

    status = 401
    code = "AuthenticationFailed"
    default_message = "access authentication failed"

    def __init__(self, reason: str) -> None:
        super().__init__(self.default_message, reason=reason)


class UnauthorizedError(StrongroomError):
    status = 401
    code = "Unauthorized"
    default_message = "a valid token is required"


class ForbiddenError(StrongroomError):
    status = 403
    code = "Forbidden"
    default_message = "permission denied"


class NotFoundError(StrongroomError):
    status = 404
    code = "NotFound"
    default_message = "not found"


class ConflictError(StrongroomError):
    status = 409
    code = "Conflict"
    default_message = "conflict"


class PayloadTooLargeError(StrongroomError):
    status = 413
    code = "PayloadTooLarge"
    default_message = "the request body or value is too large"


class RateLimitedError(StrongroomError):
    status = 429
    code = "TooManyRequests"
    default_message = "too many failed attempts; retry later"

    def __init__(self, retry_after: int, *, reason: str | None = None) -> None:
        super().__init__(reason=reason)
        self.retry_after = retry_after


class UpstreamUnavailableError(StrongroomError):
    status = 502
    code = "UpstreamUnavailable"
    default_message = "AWS STS is unavailable; retry later"


class ServiceUnavailableError(StrongroomError):
    status = 503
    code = "ServiceUnavailable"
    default_message = "the service is unavailable; retry later"


class ConfigurationError(Exception):
    """The server cannot start as configured; the message says what to change."""
