"""The login request (SPEC section 3). Which fields are required depends on ``access_type``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from strongroom.errors import InvalidRequestError
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


def parse_login_request(raw: bytes) -> LoginRequest:
    """Validate a login body; InvalidRequestError with the first problem otherwise."""
    try:
        return LoginRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_errors(exc.errors())) from None
