"""What ``/openapi.json`` says beyond the routes' own declarations (SPEC section 5).

- The two ways to send a token, as security schemes: ``Authorization: Bearer t-…``
  (``bearer``) and Vault's ``X-Vault-Token: t-…`` (``vaultToken``). Every operation that needs a
  token lists both (``openapi_extra=TOKEN_REQUIRED``); login, health, readiness and metrics list
  none.
- Errors as the server answers them: each operation lists its error statuses with the native
  :class:`~strongroom.api.schemas.Error` (``errors(…)``) or, on the Vault-compatible routes,
  :class:`~strongroom.vault.schemas.VaultErrors` (``vault_errors(…)``).
- No 422: FastAPI documents a 422 ``HTTPValidationError`` for every operation with parameters
  or a body, but bad input is answered 400 ``InvalidRequest`` (``api/errors.py``), so
  :func:`install_openapi` removes it and its two schemas.

The responses' bodies are the routes' ``response_model``s. A route answers with a ``Response``
it built (orjson), which FastAPI sends as it is: a ``response_model`` costs the request nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from strongroom.api.schemas import Error
from strongroom.vault.schemas import VaultErrors

BEARER = "bearer"
VAULT_HEADER = "vaultToken"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer t-…`: the token of a login (POST /v1/auth/login).",
    },
    VAULT_HEADER: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Vault-Token",
        "description": "The same token as Vault clients send it (`X-Vault-Token: t-…`); taken "
        "wherever `Authorization: Bearer` is.",
    },
}

# Either scheme will do: two alternatives, not both at once.
TOKEN_REQUIRED: dict[str, Any] = {"security": [{BEARER: []}, {VAULT_HEADER: []}]}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}

_NATIVE: dict[int, str] = {
    400: "Bad input (`InvalidRequest`, `InvalidName`; `RuleTooComplex`: a rule change whose "
    "no-escalation check exceeds its budget); the message names the first problem.",
    401: "`Unauthorized`: no token, or an unknown, expired or revoked one. A failed login is "
    "`AuthenticationFailed`, one body whatever the reason.",
    403: "`Forbidden`: the caller's rules do not allow it.",
    404: "`NotFound`.",
    409: "`Conflict`: it exists already, `expected_version` is not the newest, or what the "
    "change was checked against changed meanwhile (retry).",
    413: "`PayloadTooLarge`: a body over 1 MiB or a value over 64 KiB.",
    429: "`TooManyRequests`: too many failed logins from this source; retry after Retry-After.",
    502: "`UpstreamUnavailable`: AWS STS did not answer in time, or answered nonsense.",
    503: "`ServiceUnavailable`: the database or the audit trail cannot be written (nothing "
    "was changed); retry later.",
}

_VAULT: dict[int, str] = {
    400: "Bad input, a failed login (`access authentication failed`) or a check-and-set mismatch.",
    403: "`permission denied`: no valid token, or the caller's rules do not allow it (Vault "
    "tells neither apart).",
    404: '`{"errors": []}`: nothing there, or nothing the caller may list.',
    405: "`unsupported operation`.",
    413: "A body over 1 MiB or a value over 64 KiB.",
    429: "Too many failed logins from this source; retry after Retry-After.",
    502: "AWS STS did not answer in time, or answered nonsense.",
    503: "The database or the audit trail cannot be written (nothing was changed).",
}


def _responses(
    statuses: tuple[int, ...], descriptions: dict[int, str], model: type[Any]
) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": model, "description": descriptions[status]}
        if status == 429:
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a native operation that can fail with ``statuses``."""
    return _responses(statuses, _NATIVE, Error)


def vault_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a Vault-compatible operation that can fail with ``statuses``."""
    return _responses(statuses, _VAULT, VaultErrors)


_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def build_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document: FastAPI's, with the security schemes and without 422."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {})
    for name in _VALIDATION_SCHEMAS:
        components.get("schemas", {}).pop(name, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_schema` at the app's ``openapi_url`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
