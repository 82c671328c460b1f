"""The login request (SPEC section 3), the token it answers and a token's description.

Which request fields are required depends on ``access_type``. The response models describe the
bodies the routes send (``/openapi.json``) and forbid fields they do not name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from strongroom.errors import InvalidRequestError
from strongroom.kit.timestamp import Timestamp
from strongroom.kit.validation import describe_validation_errors

# Decoded cloud-ids are small; this bounds the work done before any check (SPEC: ≤ 16 KiB).
MAX_CLOUD_ID_CHARS = 16 * 1024


class LoginRequest(BaseModel):
    # Clients such as Akeyless's SDK send defaults for fields we do not use: ignore extras.
    model_config = ConfigDict(extra="ignore")

    # Akeyless's SDK spells these in kebab-case; both spellings are accepted.
    access_id: str = Field(max_length=32, validation_alias=AliasChoices("access_id", "access-id"))
    access_type: Literal["aws_iam", "access_key", "api_key"] = Field(
        validation_alias=AliasChoices("access_type", "access-type")
    )
    access_key: str | None = Field(
        default=None, max_length=256, validation_alias=AliasChoices("access_key", "access-key")
    )
    cloud_id: str | None = Field(
        default=None,
        max_length=MAX_CLOUD_ID_CHARS,
        validation_alias=AliasChoices("cloud_id", "cloud-id"),
    )
    iam_http_request_method: str | None = Field(default=None, max_length=16)
    iam_request_url: str | None = Field(default=None, max_length=4096)
    iam_request_body: str | None = Field(default=None, max_length=4096)
    iam_request_headers: str | dict[str, Any] | None = Field(default=None)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


_CLAIMS = (
    "the identity the login proved: AWS IAM claims (account_id, arn, role_name, …); empty for "
    "an API key"
)


class Token(_Response):
    """A fresh token: send it as ``Authorization: Bearer t-…`` (or ``X-Vault-Token``)."""

    token: str = Field(examples=["t-…"])
    expires_at: Timestamp
    expires_in: int = Field(description="seconds until it expires")
    access_id: str
    identity: dict[str, str] = Field(description=_CLAIMS)
    roles: list[str] = Field(description="the access roles the login was granted")


class TokenDescription(_Response):
    """The caller's own token: whose it is, what it carries, when it ends."""

    access_id: str
    auth_method: str
    identity: dict[str, str] = Field(description=_CLAIMS)
    roles: list[str]
    issued_at: Timestamp
    expires_at: Timestamp
    expires_in: int = Field(ge=0, description="seconds until it expires")


def parse_login_request(raw: bytes) -> LoginRequest:
    """Validate a login body; InvalidRequestError with the first problem otherwise."""
    try:
        return LoginRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_errors(exc.errors())) from None
