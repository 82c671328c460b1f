"""Request shapes of secrets (SPEC section 5). Values are checked for size in the service so
that an oversized value is a 413, not a validation error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_VALUE_BYTES = 64 * 1024
MAX_BATCH_NAMES = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretCreate(_Strict):
    name: str = Field(max_length=600)
    value: str = Field(max_length=MAX_VALUE_BYTES * 4)
    description: str = Field(default="", max_length=1024)
    tags: list[str] = Field(default_factory=list, max_length=50)


class SecretUpdate(_Strict):
    value: str = Field(max_length=MAX_VALUE_BYTES * 4)
    expected_version: int | None = Field(default=None, ge=1)


class GetSecretValue(_Strict):
    names: list[str] = Field(min_length=1, max_length=MAX_BATCH_NAMES)
    version: int | None = Field(default=None, ge=1)
