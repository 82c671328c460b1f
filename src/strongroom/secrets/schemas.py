"""Request and response shapes of secrets and items (SPEC section 5).

Values are checked for size in the service so that an oversized value is a 413, not a
validation error. The response models describe the bodies the routes send (``/openapi.json``);
they forbid fields they do not name, so a body that grows a field without its model fails the
schema tests instead of drifting from the documentation.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel

from strongroom.kit.timestamp import Timestamp
from strongroom.rbac import Capability

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


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Secret(_Response):
    """A secret's value at one version: its newest unless the request named one."""

    name: str = Field(description="the item's path, as stored", examples=["/dev/db/password"])
    value: str
    version: int = Field(ge=1)
    created_at: Timestamp = Field(description="when this version was written")


class SecretWritten(_Response):
    """The version a create (version 1) or an update (the next version) wrote."""

    name: str
    version: int = Field(ge=1)
    created_at: Timestamp


class SecretVersion(_Response):
    """One version of a secret, without its value."""

    version: int = Field(ge=1)
    created_at: Timestamp
    created_by: str = Field(description="the access ID that wrote it")


class SecretVersions(_Response):
    """The versions of a secret that exist, oldest first."""

    name: str
    latest_version: int = Field(ge=1)
    versions: list[SecretVersion]


class SecretValues(RootModel[dict[str, str]]):
    """``{name as requested: value}`` for every name asked for."""


class Item(_Response):
    """An item's metadata, without its value, and what the caller may do with it."""

    name: str
    version: int = Field(ge=1, description="the newest version")
    description: str
    tags: list[str]
    created_at: Timestamp
    updated_at: Timestamp
    permissions: list[Capability] = Field(description="the caller's capabilities on the item")


class ItemListing(_Response):
    """The items below a folder that the caller may list, and the folders leading to them."""

    path: str = Field(description="the folder listed, normalised")
    folders: list[str]
    items: list[Item]
