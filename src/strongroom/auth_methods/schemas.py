"""Request and response shapes of auth methods (SPEC sections 3 and 5).

Everything a client sends is validated here: names, account IDs, bound globs, CIDRs and
bounded list sizes. ``sts_url`` is checked against the allowlist in the service, which knows
the server's ``STS_EXTRA_ENDPOINTS``.

The response models describe the bodies the routes send (``/openapi.json``) and forbid fields
they do not name. An auth method's settings appear beside its name only when it has them (one
made by ``strongroom bootstrap`` has none): they are not required.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
)

from strongroom.auth.aws_iam import validate_account_id, validate_bound_glob, validate_cidr
from strongroom.kit.names import validate_object_name
from strongroom.kit.timestamp import Timestamp

MAX_BOUND_ENTRIES = 100

AccountId = Annotated[str, AfterValidator(validate_account_id)]
BoundGlob = Annotated[str, AfterValidator(validate_bound_glob)]
Cidr = Annotated[str, AfterValidator(validate_cidr)]
JwtTtl = Annotated[int, Field(ge=1, le=720, description="token lifetime in minutes")]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class _CommonFields(_Strict):
    description: str = Field(default="", max_length=1024)
    jwt_ttl: JwtTtl | None = None
    access_expires: datetime | None = Field(
        default=None, description="after this moment no login succeeds (ISO 8601)"
    )
    bound_ips: list[Cidr] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)

    _aware_expiry = field_validator("access_expires")(_aware)


class AwsIamBoundFields(_Strict):
    bound_arn: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)
    bound_role_name: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)
    bound_role_id: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)
    bound_resource_id: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)
    bound_user_name: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)
    bound_user_id: list[BoundGlob] = Field(default_factory=list, max_length=MAX_BOUND_ENTRIES)


class AwsIamAuthMethodCreate(_CommonFields, AwsIamBoundFields):
    type: Literal["aws_iam"]
    name: Annotated[str, AfterValidator(lambda v: validate_object_name(v, kind="auth method"))]
    bound_aws_account_id: list[AccountId] = Field(min_length=1, max_length=MAX_BOUND_ENTRIES)
    sts_url: str = Field(default="https://sts.amazonaws.com", max_length=256)


class ApiKeyAuthMethodCreate(_CommonFields):
    type: Literal["api_key"]
    name: Annotated[str, AfterValidator(lambda v: validate_object_name(v, kind="auth method"))]


AuthMethodCreate = Annotated[
    AwsIamAuthMethodCreate | ApiKeyAuthMethodCreate, Field(discriminator="type")
]


# PATCH fields for which null means something: back to the default lifetime, no expiry.
_CLEARABLE = frozenset({"jwt_ttl", "access_expires"})


class AuthMethodUpdate(_Strict):
    """PATCH body: only the fields given change. Lists replace the stored list (``[]``
    empties one). ``null`` clears ``jwt_ttl`` (the server's default applies) and
    ``access_expires`` (no expiry); any other field refuses it."""

    description: str | None = Field(default=None, max_length=1024)
    jwt_ttl: JwtTtl | None = None
    access_expires: datetime | None = None
    bound_ips: list[Cidr] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_aws_account_id: list[AccountId] | None = Field(
        default=None, min_length=1, max_length=MAX_BOUND_ENTRIES
    )
    bound_arn: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_role_name: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_role_id: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_resource_id: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_user_name: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    bound_user_id: list[BoundGlob] | None = Field(default=None, max_length=MAX_BOUND_ENTRIES)
    sts_url: str | None = Field(default=None, max_length=256)

    _aware_expiry = field_validator("access_expires")(_aware)

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_it_clears(cls, value: object, info: ValidationInfo) -> object:
        # A field sent as null would be stored as null: an sts_url of None sends every login
        # of the method to an address nobody vetted (or breaks them all), a bound list of
        # None is no list at all. Only given fields reach this (defaults are not validated).
        if value is None and info.field_name not in _CLEARABLE:
            raise ValueError(f"{info.field_name} cannot be null")
        return value


AWS_IAM_BOUND_LISTS = (
    "bound_aws_account_id",
    "bound_arn",
    "bound_role_name",
    "bound_role_id",
    "bound_resource_id",
    "bound_user_name",
    "bound_user_id",
)
AWS_IAM_CONFIG_FIELDS = (*AWS_IAM_BOUND_LISTS, "sts_url")
COMMON_CONFIG_FIELDS = ("jwt_ttl", "access_expires", "bound_ips")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AwsIamAuthMethodCreated(_Response):
    """An AWS IAM auth method just created: log in with its ``access_id``."""

    name: str
    type: Literal["aws_iam"]
    access_id: str


class ApiKeyAuthMethodCreated(_Response):
    """An API key auth method just created. ``access_key`` is shown this once only."""

    name: str
    type: Literal["api_key"]
    access_id: str
    access_key: str


class AuthMethodCreated(
    RootModel[
        Annotated[AwsIamAuthMethodCreated | ApiKeyAuthMethodCreated, Field(discriminator="type")]
    ]
):
    """An auth method just created, by its ``type``."""


class AuthMethodAssociation(_Response):
    """A role that logins through this auth method can get."""

    assoc_id: str
    role_name: str


class _AuthMethodFields(_Response):
    name: str
    access_id: str
    description: str
    created_at: Timestamp
    updated_at: Timestamp
    jwt_ttl: int | None = Field(default=None, description="token lifetime in minutes")
    access_expires: Timestamp | None = Field(
        default=None, description="after this moment no login succeeds"
    )
    bound_ips: list[str] | None = None
    associations: list[AuthMethodAssociation] | None = Field(
        default=None, description="the roles it is associated with (not in listings)"
    )


class AwsIamAuthMethod(_AuthMethodFields):
    """An AWS IAM auth method and its bounds."""

    type: Literal["aws_iam"]
    bound_aws_account_id: list[str] | None = None
    bound_arn: list[str] | None = None
    bound_role_name: list[str] | None = None
    bound_role_id: list[str] | None = None
    bound_resource_id: list[str] | None = None
    bound_user_name: list[str] | None = None
    bound_user_id: list[str] | None = None
    sts_url: str | None = None


class ApiKeyAuthMethod(_AuthMethodFields):
    """An API key auth method (never its key)."""

    type: Literal["api_key"]


class AuthMethod(
    RootModel[Annotated[AwsIamAuthMethod | ApiKeyAuthMethod, Field(discriminator="type")]]
):
    """An auth method, by its ``type``."""


class AuthMethodName(_Response):
    """An auth method the caller may list but not read: its name and type only."""

    name: str
    type: Literal["aws_iam", "api_key"]


class AuthMethodList(_Response):
    """The auth methods the caller may list, by name: as ``get`` shows them (without their
    associations) where the caller may read them, else their name and type only."""

    auth_methods: list[AuthMethod | AuthMethodName]
