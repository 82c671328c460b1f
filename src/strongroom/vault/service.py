"""Vault's operations over Strongroom's domain services (SPEC section 10).

Every operation is a call into the service that the native API uses (secrets, login, tokens),
so authorization, validation, size limits and audit are theirs: this module only translates
names, bodies and answers. Entry points raise the same :mod:`strongroom.errors` as the native
ones; :mod:`strongroom.vault.errors` turns them into Vault's answers.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from strongroom.audit.writer import AuditWriter
from strongroom.auth.schemas import LoginRequest
from strongroom.auth.service import LoginService
from strongroom.auth.tokens import Caller, TokenService
from strongroom.auth_methods.service import AuthMethodService
from strongroom.db.engine import Database
from strongroom.db.work import DatabaseWork
from strongroom.errors import (
    AuthenticationDenied,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from strongroom.kit.ids import ACCESS_ID_PREFIX
from strongroom.kit.names import normalize_item_path
from strongroom.kit.validation import describe_validation_errors
from strongroom.rbac import Capability, RuleType
from strongroom.request_context import RequestContext
from strongroom.secrets.schemas import MAX_VALUE_BYTES, SecretCreate, SecretUpdate, SecretWritten
from strongroom.secrets.service import SecretService
from strongroom.vault import kv
from strongroom.vault.schemas import (
    KvKeys,
    KvMetadata,
    KvMount,
    KvSecret,
    KvVersion,
    VaultAuth,
    VaultAwsLogin,
    VaultTokenLookup,
)

_ACCESS_ID = re.compile(re.escape(ACCESS_ID_PREFIX) + r"[a-z0-9]{12}")
CAS_MISMATCH = "check-and-set parameter did not match the current version"


class VaultService:
    def __init__(
        self,
        *,
        database: Database,
        writer: AuditWriter,
        login: LoginService,
        tokens: TokenService,
        auth_methods: AuthMethodService,
        secrets: SecretService,
        work: DatabaseWork,
    ) -> None:
        """``work`` runs the database work of a login's name lookup (``db/work.py``); the
        other entry points are synchronous, for the routes to run through it."""
        self._work = work
        self._db = database
        self._writer = writer
        self._login = login
        self._tokens = tokens
        self._auth_methods = auth_methods
        self._secrets = secrets

    # -- auth/aws and auth/token -----------------------------------------------------------

    async def login(self, unverified_body: bytes, context: RequestContext) -> VaultAuth:
        """Vault's ``auth`` object for an AWS IAM login; the native login's errors."""
        try:
            body = VaultAwsLogin.model_validate_json(unverified_body)
        except ValidationError as exc:
            raise InvalidRequestError(describe_validation_errors(exc.errors())) from None
        if body.iam_request_url is None:
            if body.pkcs7 is not None or body.identity is not None:
                raise InvalidRequestError("only IAM logins (iam_* fields) are served, not EC2 ones")
            raise InvalidRequestError(
                "iam_http_request_method, iam_request_url, iam_request_body and "
                "iam_request_headers are required"
            )
        if not body.role:
            raise InvalidRequestError(
                "role is required: the auth method's access ID (p-…) or its name"
            )
        access_id = await self._work.run(self._access_id, body.role)
        login = LoginRequest(
            access_id=access_id,
            access_type="aws_iam",
            iam_http_request_method=body.iam_http_request_method,
            iam_request_url=body.iam_request_url,
            iam_request_body=body.iam_request_body,
            iam_request_headers=body.iam_request_headers,
        )
        result = await self._login.login(login, context)
        roles = list(result.roles)
        return VaultAuth(
            client_token=result.token,
            accessor=self._tokens.digest(result.token),
            policies=roles,
            token_policies=roles,
            identity_policies=None,
            metadata=result.identity,
            lease_duration=result.expires_in,
            renewable=False,
            entity_id="",
            token_type="service",  # noqa: S106 - Vault's token kind, not a credential
            orphan=True,
            mfa_requirement=None,
            num_uses=0,
        )

    def _access_id(self, role: str) -> str:
        """An access ID as given; otherwise the access ID of the auth method of that name.

        An unknown name is a failed login (the same answer as an unknown access ID)."""
        if _ACCESS_ID.fullmatch(role):
            return role
        access_id = self._auth_methods.access_id_of(role)
        if access_id is None:
            raise AuthenticationDenied(f"no auth method named {role[:128]!r}")
        return access_id

    def token_lookup(self, caller: Caller, token: str, context: RequestContext) -> VaultTokenLookup:
        """``auth/token/lookup-self``: the caller's token as Vault describes one.

        ``id`` is the token itself (Vault answers it, and OpenBao Agent's token_file method
        reads it); ``type`` and ``renewable`` are read by the agent too.
        """
        roles = list(caller.role_names)
        return VaultTokenLookup(
            accessor=caller.token_digest,
            creation_time=int(caller.issued_at.timestamp()),
            creation_ttl=int((caller.expires_at - caller.issued_at).total_seconds()),
            display_name=caller.auth_method_name,
            entity_id="",
            expire_time=caller.expires_at,
            explicit_max_ttl=0,
            id=token,
            issue_time=caller.issued_at,
            meta=dict(caller.claims) or None,
            num_uses=0,
            orphan=True,
            policies=roles,
            renewable=False,
            ttl=max(0, int((caller.expires_at - context.now).total_seconds())),
            type="service",
        )

    def revoke_self(self, caller: Caller, context: RequestContext) -> None:
        self._tokens.revoke_own(caller, context, 204)

    # -- secret/ (KV version 2) ------------------------------------------------------------

    async def kv_read(
        self,
        caller: Caller,
        unverified_path: str,
        version: int | None,
        context: RequestContext,
    ) -> KvSecret:
        read = await self._secrets.read(caller, kv.item_name(unverified_path), version, context)
        return KvSecret(
            data=kv.data_of(read.value),
            metadata=kv.version_metadata(read.version, read.created_at),
        )

    def kv_write(
        self,
        caller: Caller,
        unverified_path: str,
        unverified_body: bytes,
        context: RequestContext,
    ) -> KvVersion:
        """A new version, created or updated as the item's existence says (Vault decides
        create against update on the server, not from the HTTP method).

        ``cas`` 0 writes only a new item, N only over version N; a mismatch is 400.
        """
        name = normalize_item_path(kv.item_name(unverified_path))
        context.event.path = name
        try:
            unverified = kv.parse_json(unverified_body or b"null")
        except ValueError as exc:
            raise InvalidRequestError(f"the body is not valid JSON: {str(exc)[:200]}") from None
        write = kv.parse_write(unverified)
        value = kv.value_of(write.data)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise PayloadTooLargeError(f"a secret value is at most {MAX_VALUE_BYTES} bytes")
        if write.cas == 0:
            try:
                written = self._create(caller, name, value, context)
            except ConflictError:
                raise InvalidRequestError(CAS_MISMATCH) from None
        elif write.cas is not None:
            try:
                written = self._update(caller, name, value, write.cas, context)
            except (ConflictError, NotFoundError):
                raise InvalidRequestError(CAS_MISMATCH) from None
        else:
            written = self._create_or_update(caller, name, value, context)
        return kv.version_metadata(written.version, written.created_at)

    def _create_or_update(
        self, caller: Caller, name: str, value: str, context: RequestContext
    ) -> SecretWritten:
        # Authorize first: neither right means 403 before the item's existence is looked at.
        allowed = caller.allowed(RuleType.ITEM, name, context.now)
        may_create, may_update = Capability.CREATE in allowed, Capability.UPDATE in allowed
        if not may_update:
            if not may_create:
                caller.require(Capability.UPDATE, RuleType.ITEM, name, context.now)
            try:
                return self._create(caller, name, value, context)
            except ConflictError:
                raise ForbiddenError(
                    reason=f"update on item {name} not allowed (it exists; create is held)"
                ) from None
        try:
            return self._update(caller, name, value, None, context)
        except NotFoundError:
            if not may_create:
                raise ForbiddenError(
                    reason=f"create on item {name} not allowed (it does not exist)"
                ) from None
        try:
            return self._create(caller, name, value, context)
        except ConflictError:
            # Created between the two calls by another writer: this write is its next version.
            return self._update(caller, name, value, None, context)

    def _create(
        self, caller: Caller, name: str, value: str, context: RequestContext
    ) -> SecretWritten:
        context.event.action = "secret.create"
        return self._secrets.create(caller, SecretCreate(name=name, value=value), context)

    def _update(
        self,
        caller: Caller,
        name: str,
        value: str,
        expected_version: int | None,
        context: RequestContext,
    ) -> SecretWritten:
        context.event.action = "secret.update"
        body = SecretUpdate(value=value, expected_version=expected_version)
        return self._secrets.update(caller, name, body, context)

    def kv_list(self, caller: Caller, unverified_path: str, context: RequestContext) -> KvKeys:
        """``{"keys": […]}`` of what the caller may list; 404 when that is nothing (as Vault
        answers an empty listing, so an empty folder and a hidden one look the same)."""
        listing = self._secrets.list(caller, kv.item_name(unverified_path), False, context)
        keys = kv.list_keys(listing.folders, [item.name for item in listing.items])
        if not keys:
            raise NotFoundError(reason=f"nothing the caller may list below {listing.path}")
        return KvKeys(keys=keys)

    def kv_metadata(
        self, caller: Caller, unverified_path: str, context: RequestContext
    ) -> KvMetadata:
        """The key's metadata and versions (read on the item, as its versions need natively)."""
        found = self._secrets.versions(caller, kv.item_name(unverified_path), context)
        versions = [(v.version, v.created_at) for v in found.versions]
        if not versions:  # a secret always has a version; answered as missing all the same
            raise NotFoundError(reason=f"no versions of {found.name}")
        return kv.key_metadata(found.latest_version, versions)

    def kv_delete(self, caller: Caller, unverified_path: str, context: RequestContext) -> None:
        """``DELETE secret/metadata/<p>``: the key and every version, as in Vault."""
        self._secrets.delete(caller, kv.item_name(unverified_path), None, context)

    @staticmethod
    def mount(unverified_path: str) -> KvMount:
        """``sys/internal/ui/mounts/<path>``: the KV mount for paths under ``secret/``; any
        other path is refused as Vault refuses a path outside every mount (403, so the answer
        cannot be used to probe for mounts)."""
        if not kv.is_in_mount(unverified_path):
            raise ForbiddenError(reason=f"no mount serves {unverified_path[:200]!r}")
        return kv.MOUNT_DESCRIPTION
