"""Request and response shapes of the Vault-compatible surface (SPEC section 10).

Every answer is Vault's envelope (``api/vault_route.py``)::

    {"request_id", "lease_id": "", "renewable": false, "lease_duration": 0,
     "data": …, "wrap_info": null, "warnings": null, "auth": …}

with ``data`` or ``auth`` filled in; each ``…Response`` model below is that envelope around one
operation's body. Failures are ``{"errors": ["…"]}`` (:class:`VaultErrors`). The response
models describe the bodies the routes send (``/openapi.json``) and forbid fields they do not
name; Vault's clients parse them leniently, but a body cannot drift unnoticed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from strongroom.kit.timestamp import Timestamp

# -- requests --------------------------------------------------------------------------------


class VaultAwsLogin(BaseModel):
    """``POST /v1/auth/aws/login``: Vault's IAM login fields (hvac, the Vault and OpenBao
    CLIs and agents). ``role`` names the auth method: its access ID or its name."""

    model_config = ConfigDict(extra="ignore")

    role: str | None = Field(default=None, max_length=128)
    iam_http_request_method: str | None = Field(default=None, max_length=16)
    iam_request_url: str | None = Field(default=None, max_length=4096)
    iam_request_body: str | None = Field(default=None, max_length=4096)
    iam_request_headers: str | dict[str, Any] | None = None
    # The EC2 method's fields: recognised only to say that it is not served.
    pkcs7: str | None = Field(default=None, max_length=16 * 1024)
    identity: str | None = Field(default=None, max_length=16 * 1024)


# -- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VaultErrors(_Body):
    """Vault's error shape. A bad token and a missing right are both 403 ``permission
    denied``; nothing found is 404 with an empty list."""

    errors: list[str] = Field(examples=[["permission denied"]])


class VaultAuth(_Body):
    """A login's token, as Vault's ``auth`` object."""

    client_token: str = Field(description="the token (t-…): send it as X-Vault-Token")
    accessor: str
    policies: list[str] = Field(description="the access roles the login was granted")
    token_policies: list[str]
    identity_policies: list[str] | None
    metadata: dict[str, str] = Field(description="the claims of the AWS identity")
    lease_duration: int = Field(description="seconds until the token expires")
    renewable: bool
    entity_id: str
    token_type: str
    orphan: bool
    mfa_requirement: dict[str, Any] | None
    num_uses: int


class VaultTokenLookup(_Body):
    """The caller's token, as ``auth/token/lookup-self`` describes one."""

    accessor: str
    creation_time: int = Field(description="Unix time of issue")
    creation_ttl: int
    display_name: str = Field(description="the auth method's name")
    entity_id: str
    expire_time: Timestamp
    explicit_max_ttl: int
    id: str = Field(description="the token itself")
    issue_time: Timestamp
    meta: dict[str, str] | None
    num_uses: int
    orphan: bool
    policies: list[str]
    renewable: bool
    ttl: int = Field(description="seconds left")
    type: str


class KvVersion(_Body):
    """One version's metadata. There is no soft delete: never deleted, never destroyed."""

    created_time: Timestamp
    custom_metadata: dict[str, str] | None
    deletion_time: str = Field(description='always ""')
    destroyed: bool
    version: int


class KvSecret(_Body):
    """A secret's data: the item's value when that is a JSON object, else ``{"value": …}``."""

    data: dict[str, Any]
    metadata: KvVersion


class KvKeys(_Body):
    """What a folder holds that the caller may list: names, and folders ending in ``/``."""

    keys: list[str]


class KvVersionState(_Body):
    created_time: Timestamp
    deletion_time: str
    destroyed: bool


class KvMetadata(_Body):
    """A secret's metadata and the versions that exist, by number."""

    cas_required: bool
    created_time: Timestamp
    current_version: int
    custom_metadata: dict[str, str] | None
    delete_version_after: str
    max_versions: int
    oldest_version: int
    updated_time: Timestamp
    versions: dict[str, KvVersionState]


class KvMountConfig(_Body):
    default_lease_ttl: int
    max_lease_ttl: int
    force_no_cache: bool


class KvMount(_Body):
    """The mount that serves a path: KV version 2 at ``secret/``."""

    type: str = Field(examples=["kv"])
    path: str = Field(examples=["secret/"])
    description: str
    accessor: str
    options: dict[str, str] = Field(examples=[{"version": "2"}])
    config: KvMountConfig
    local: bool
    seal_wrap: bool
    external_entropy_access: bool
    plugin_version: str


# -- envelopes -------------------------------------------------------------------------------


class _Envelope(_Body):
    request_id: str
    lease_id: str
    renewable: bool
    lease_duration: int
    wrap_info: None
    warnings: list[str] | None


class VaultAuthResponse(_Envelope):
    """A login: the token in ``auth``."""

    data: None
    auth: VaultAuth


class VaultTokenLookupResponse(_Envelope):
    data: VaultTokenLookup
    auth: None


class KvSecretResponse(_Envelope):
    data: KvSecret
    auth: None


class KvVersionResponse(_Envelope):
    """A write: the version it made."""

    data: KvVersion
    auth: None


class KvKeysResponse(_Envelope):
    data: KvKeys
    auth: None


class KvMetadataResponse(_Envelope):
    """A secret's metadata; with ``?list=true``, the keys below the path instead."""

    data: KvMetadata | KvKeys
    auth: None


class KvMountResponse(_Envelope):
    data: KvMount
    auth: None
