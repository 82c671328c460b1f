"""Errors as Vault answers them: ``{"errors": ["…"]}``, with Vault's status codes. Pure.

    StrongroomError                    Vault surface
    ├── UnauthorizedError   401        403 ["permission denied"]   Vault has no 401: one answer
    ├── ForbiddenError      403        403 ["permission denied"]   for a bad token and a missing
    │                                                               right, so neither is told apart
    ├── AuthenticationDenied 401       400 ["access authentication failed"]   as Vault's AWS
    │                                                               login refuses a principal
    ├── NotFoundError       404        404 []                      Vault's empty list
    ├── ConflictError       409        400 [message]               Vault has no 409 (CAS: 400)
    ├── UnsupportedOperationError      405 [message]               a method a path does not serve
    └── anything else                  its own status and message (400, 413, 429 + Retry-After,
                                        502, 503)

The message is the client-safe one; the precise reason stays in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.errors import (
    AuthenticationDenied,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    StrongroomError,
    UnauthorizedError,
)

PERMISSION_DENIED = "permission denied"
# Paths of the Vault-compatible surface: every answer under them has Vault's shape, routing's
# 404 and 405 included. (The native API's /v1/auth/token has no trailing slash.)
VAULT_PATH_PREFIXES = ("/v1/secret/", "/v1/sys/internal/ui/", "/v1/auth/aws/", "/v1/auth/token/")


class UnsupportedOperationError(StrongroomError):
    """A method that a Vault path does not serve (Vault's 405 "unsupported operation")."""

    status = 405
    code = "MethodNotAllowed"
    default_message = "unsupported operation"


@dataclass(frozen=True, slots=True)
class VaultError:
    status: int
    errors: list[str]
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, list[str]]:
        return {"errors": self.errors}


def vault_http_error(status: int, message: str) -> VaultError:
    """Vault's answer when routing itself fails (no such path, or not with this method)."""
    if status == 404:
        return VaultError(404, [])
    if status == 405:
        return VaultError(405, ["unsupported operation"])
    return VaultError(status, [message])


def vault_error(exc: StrongroomError) -> VaultError:
    """How the Vault surface answers ``exc`` (see the module docstring)."""
    if isinstance(exc, UnauthorizedError | ForbiddenError):
        return VaultError(403, [PERMISSION_DENIED])
    if isinstance(exc, AuthenticationDenied):
        return VaultError(400, [exc.message])
    if isinstance(exc, NotFoundError):
        return VaultError(404, [])
    if isinstance(exc, ConflictError):
        return VaultError(400, [exc.message])
    if isinstance(exc, RateLimitedError):
        return VaultError(exc.status, [exc.message], {"Retry-After": str(exc.retry_after)})
    return VaultError(exc.status, [exc.message])
