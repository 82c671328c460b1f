"""Request and response shapes of access roles, rules and associations (SPEC section 4).

The response models describe the bodies the routes send (``/openapi.json``) and forbid fields
they do not name, so a body cannot drift from its documentation unnoticed.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from strongroom.kit.names import validate_object_name
from strongroom.kit.timestamp import Timestamp
from strongroom.rbac import CLAIM_NAMES, Capability, RuleType

MAX_SUB_CLAIM_VALUES = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class RoleCreate(_Strict):
    name: Annotated[str, AfterValidator(lambda v: validate_object_name(v, kind="role"))]
    description: str = Field(default="", max_length=1024)


class RuleUpdate(_Strict):
    """PUT body: set (or replace) the capabilities of one (rule_type, path) of a role.

    Not to be confused with :class:`strongroom.rbac.RuleSet`, the compiled rules of a caller.
    """

    rule_type: str = "item-rule"
    path: str = Field(max_length=600)
    capabilities: list[str] = Field(min_length=1, max_length=6)
    ttl: int | None = Field(default=None, ge=1, le=5_256_000, description="minutes until expiry")


class AssociationCreate(_Strict):
    auth_method: Annotated[
        str, AfterValidator(lambda v: validate_object_name(v, kind="auth method"))
    ]
    sub_claims: dict[str, list[str]] = Field(default_factory=dict, max_length=len(CLAIM_NAMES))

    @field_validator("sub_claims", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        # Accept {"role_name": "web-*"} and comma lists as Akeyless's CLI writes them.
        if isinstance(value, dict):
            return {
                key: [part.strip() for part in item.split(",") if part.strip()]
                if isinstance(item, str)
                else item
                for key, item in value.items()
            }
        return value

    @field_validator("sub_claims")
    @classmethod
    def _known_claims(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, values in value.items():
            if key not in CLAIM_NAMES:
                raise ValueError(f"unknown claim {key!r}; claims are {sorted(CLAIM_NAMES)}")
            if not values or len(values) > MAX_SUB_CLAIM_VALUES:
                raise ValueError(f"claim {key!r} needs 1-{MAX_SUB_CLAIM_VALUES} values")
            for item in values:
                if not item or len(item) > 256 or not item.isprintable():
                    raise ValueError(f"claim {key!r} has an empty, long or unprintable value")
        return value


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleCreated(_Response):
    """The role just created."""

    name: str
    description: str


class Role(_Response):
    """An access role the caller may read, as listings show it."""

    name: str
    description: str
    created_at: Timestamp


class RoleName(_Response):
    """An access role the caller may list but not read: its name only."""

    name: str


class RoleList(_Response):
    """The roles the caller may list, by name: with description and creation time where the
    caller may read them."""

    roles: list[Role | RoleName]


class RoleRule(_Response):
    """One rule of a role."""

    rule_type: RuleType
    path: str
    capabilities: list[Capability]
    expires_at: Timestamp | None = Field(description="null: the rule does not expire")
    expired: bool


class RoleAssociation(_Response):
    """An association of a role with an auth method: logins through that method whose claims
    match ``sub_claims`` get the role."""

    assoc_id: str
    auth_method: str
    access_id: str
    sub_claims: dict[str, list[str]]


class RoleDetail(Role):
    """A role with its rules and its associations."""

    rules: list[RoleRule]
    associations: list[RoleAssociation]


class RuleWritten(_Response):
    """The rule a ``PUT …/rules`` set."""

    role_name: str
    rule_type: RuleType
    path: str
    capabilities: list[Capability]
    expires_at: Timestamp | None = Field(description="null: the rule does not expire")


class AssociationCreated(_Response):
    """The association just created; ``assoc_id`` names it for its removal."""

    assoc_id: str
    role_name: str
    auth_method: str
