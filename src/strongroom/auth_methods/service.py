"""Auth methods: create, list, show, change, delete (SPEC section 5), authorization first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth import token_repository
from strongroom.auth.aws_iam import validate_sts_url
from strongroom.auth.tokens import Caller
from strongroom.auth_methods import repository
from strongroom.auth_methods.repository import StoredAuthMethod
from strongroom.auth_methods.schemas import (
    AWS_IAM_CONFIG_FIELDS,
    COMMON_CONFIG_FIELDS,
    ApiKeyAuthMethod,
    ApiKeyAuthMethodCreate,
    ApiKeyAuthMethodCreated,
    AuthMethod,
    AuthMethodAssociation,
    AuthMethodList,
    AuthMethodName,
    AuthMethodUpdate,
    AwsIamAuthMethod,
    AwsIamAuthMethodCreate,
    AwsIamAuthMethodCreated,
)
from strongroom.auth_methods.widening import widened_settings
from strongroom.crypto import TokenDigester
from strongroom.db.engine import Database
from strongroom.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from strongroom.kit.clock import isoformat_z
from strongroom.kit.ids import new_access_id, new_access_key
from strongroom.kit.names import validate_object_name
from strongroom.rbac import Capability, RuleType
from strongroom.rbac.escalation import check_grants
from strongroom.request_context import RequestContext
from strongroom.roles import repository as role_repository
from strongroom.roles.checks import EscalationChecks
from strongroom.roles.repository import AssociatedRole


def _config_to_json(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: isoformat_z(value) if isinstance(value, datetime) else value
        for key, value in values.items()
    }


AuthMethodView = AwsIamAuthMethod | ApiKeyAuthMethod


def render(
    row: StoredAuthMethod, associations: Sequence[AssociatedRole] | None = ()
) -> AuthMethodView:
    """The view of an auth method row for a caller who may read it (never the access key
    digest); ``associations`` None leaves them out (not looked up). Settings the method does
    not have are left unset, so that its body shows only those it has."""
    view: dict[str, Any] = {
        "name": row.name,
        "type": row.type,
        "access_id": row.access_id,
        "description": row.description,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        **row.config,
    }
    if associations is not None:
        view["associations"] = [
            AuthMethodAssociation(assoc_id=a.assoc_id, role_name=a.role_name) for a in associations
        ]
    if row.type == "aws_iam":
        return AwsIamAuthMethod.model_validate(view)
    return ApiKeyAuthMethod.model_validate(view)


class AuthMethodService:
    def __init__(
        self,
        database: Database,
        writer: AuditWriter,
        digester: TokenDigester,
        checks: EscalationChecks,
        *,
        sts_extra_endpoints: Sequence[str],
    ) -> None:
        self._db = database
        self._writer = writer
        self._digester = digester
        self._checks = checks
        self._sts_extra_endpoints = tuple(sts_extra_endpoints)

    def create(
        self,
        caller: Caller | None,
        body: AwsIamAuthMethodCreate | ApiKeyAuthMethodCreate,
        context: RequestContext,
    ) -> AwsIamAuthMethodCreated | ApiKeyAuthMethodCreated:
        """Create; return ``access_id`` and, for api_key, the access key (shown only here).

        ``caller`` None is the bootstrap path (the CLI, with direct database access).
        """
        path = "/" + body.name
        context.event.path = path
        if caller is not None:
            caller.require(Capability.CREATE, RuleType.AUTH_METHOD, path, context.now)
        fields = body.model_dump(include=set(COMMON_CONFIG_FIELDS))
        access_key: str | None = None
        if isinstance(body, AwsIamAuthMethodCreate):
            fields |= body.model_dump(include=set(AWS_IAM_CONFIG_FIELDS))
            fields["sts_url"] = validate_sts_url(body.sts_url, self._sts_extra_endpoints)
        else:
            access_key = new_access_key()
        access_id = new_access_id()
        try:
            with audited_write(self._db, self._writer, context.event, 201) as connection:
                repository.insert_method(
                    connection,
                    access_id=access_id,
                    name=body.name,
                    method_type=body.type,
                    description=body.description,
                    config=_config_to_json(fields),
                    access_key_digest=(
                        self._digester.digest(access_key) if access_key is not None else None
                    ),
                    now=context.now,
                )
        except IntegrityError as exc:
            raise ConflictError(f"an auth method named {body.name!r} already exists") from exc
        if access_key is not None:
            return ApiKeyAuthMethodCreated(
                name=body.name, type="api_key", access_id=access_id, access_key=access_key
            )
        return AwsIamAuthMethodCreated(name=body.name, type="aws_iam", access_id=access_id)

    def list(self, caller: Caller, context: RequestContext) -> AuthMethodList:
        """Every auth method the caller may list; the others do not appear.

        Each shows its name and type; the rest of its view (access ID, description, bounds,
        ``sts_url``, token lifetime) only when the caller may also read it, as ``get`` would
        show it (without the associations, which ``get`` looks up).
        """
        with self._db.read() as connection:
            rows = repository.all_methods(connection)
        listed: list[AuthMethod | AuthMethodName] = []
        for row in rows:
            allowed = caller.rules.allowed(RuleType.AUTH_METHOD, "/" + row.name, context.now)
            if Capability.LIST not in allowed:
                continue
            # Reconnaissance: whoever may only list learns which methods exist, not which
            # accounts, roles and addresses they admit nor the access IDs that log in to them.
            if Capability.READ in allowed:
                listed.append(AuthMethod(render(row, associations=None)))
            else:
                listed.append(AuthMethodName.model_validate({"name": row.name, "type": row.type}))
        return AuthMethodList(auth_methods=listed)

    def get(self, caller: Caller, name: str, context: RequestContext) -> AuthMethodView:
        validate_object_name(name, kind="auth method")
        context.event.path = "/" + name
        caller.require(Capability.READ, RuleType.AUTH_METHOD, "/" + name, context.now)
        with self._db.read() as connection:
            row = self._row_by_name(connection, name)
            associations = role_repository.associations_of_method(connection, row.id)
        return render(row, associations)

    async def update(
        self,
        caller: Caller,
        name: str,
        patch: AuthMethodUpdate,
        context: RequestContext,
    ) -> AuthMethodView:
        """Change the method's settings; the fields given replace the stored ones.

        Attack: widening the bounds of a method associated with a strong role (adding one's
        own IAM role to ``bound_role_name``, dropping ``bound_ips``, …) and logging in through
        it. A change that may let more in, or keep tokens longer
        (:func:`~strongroom.auth_methods.widening.widened_settings`), hands the rules of every
        role associated with the method to new holders, so the caller must hold everything
        those roles grant, as for an association; a change that only narrows needs ``update``
        alone.
        """
        validate_object_name(name, kind="auth method")
        context.event.path = "/" + name
        caller.require(Capability.UPDATE, RuleType.AUTH_METHOD, "/" + name, context.now)
        changes = patch.model_dump(exclude_unset=True)
        description = changes.pop("description", None)
        with self._db.read() as connection:
            row = self._row_by_name(connection, name)
            config = self._changed_config(row, changes)
            widened = widened_settings(row.config, config)
            role_ids = role_repository.role_ids_of_method(connection, row.id)
            rules = role_repository.rules_of_roles(connection, role_ids) if widened else []
        if rules:
            refused = await self._checks.run(
                lambda budget: check_grants(caller.rules, rules, context.now, budget)
            )
            if refused is not None:
                rule = refused.rule
                raise ForbiddenError(
                    "you can widen who logs in through an auth method (or for how long) only "
                    "if you hold everything its associated roles grant",
                    reason=f"escalation refused (auth_method.update: {', '.join(widened)}): "
                    f"{sorted(c.value for c in rule.capabilities)} on "
                    f"{rule.rule_type.value} {rule.path}",
                )
        with audited_write(self._db, self._writer, context.event, 200) as connection:
            locked = self._row_by_name(connection, name, lock=True)
            # What was judged a narrowing of the old settings may widen newer ones.
            if locked.config != row.config:
                raise ConflictError(
                    "the auth method changed while this change was being checked; retry"
                )
            repository.update_method(
                connection, row.id, config=config, description=description, now=context.now
            )
            # Bounds apply at login; live tokens keep their rules. Caches still refresh.
            token_repository.bump_generation(connection)
            updated = self._row_by_name(connection, name)
        return render(updated)

    def _changed_config(self, row: StoredAuthMethod, changes: dict[str, Any]) -> dict[str, Any]:
        """The stored configuration with ``changes`` applied; InvalidRequestError for a field
        that does not apply to the method's type or a value that is not allowed."""
        allowed = set(COMMON_CONFIG_FIELDS)
        if row.type == "aws_iam":
            allowed |= set(AWS_IAM_CONFIG_FIELDS)
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidRequestError(
                f"fields {sorted(unknown)} do not apply to a {row.type} auth method"
            )
        if "sts_url" in changes:
            # Server-side request forgery: every login replays its request to sts_url. Never
            # unset (the schema refuses null, so it is a 400 before any widening check), always
            # an allowed STS endpoint.
            changes["sts_url"] = validate_sts_url(
                str(changes["sts_url"]), self._sts_extra_endpoints
            )
        if "bound_aws_account_id" in changes and not changes["bound_aws_account_id"]:
            raise InvalidRequestError("bound_aws_account_id cannot be empty")
        return {**row.config, **_config_to_json(changes)}

    def delete(self, caller: Caller, name: str, context: RequestContext) -> None:
        """Delete the method; its associations and every token it issued go with it."""
        validate_object_name(name, kind="auth method")
        context.event.path = "/" + name
        caller.require(Capability.DELETE, RuleType.AUTH_METHOD, "/" + name, context.now)
        with audited_write(self._db, self._writer, context.event, 204) as connection:
            row = self._row_by_name(connection, name)
            repository.delete_method(connection, row.id)
            token_repository.bump_generation(connection)

    @staticmethod
    def _row_by_name(connection: Connection, name: str, *, lock: bool = False) -> StoredAuthMethod:
        """The method (``lock``: locked until the transaction ends, on PostgreSQL);
        NotFoundError if there is none."""
        row = repository.method_by_name(connection, name, lock=lock)
        if row is None:
            raise NotFoundError(f"no auth method named {name!r}")
        return row

    @staticmethod
    def id_by_name(connection: Connection, name: str) -> int:
        return AuthMethodService._row_by_name(connection, name).id

    def access_id_of(self, name: str) -> str | None:
        """The access ID of the auth method named ``name``, or None; no authorization (SPEC
        section 10: a Vault login names its auth method, and access IDs are not secret)."""
        with self._db.read() as connection:
            return repository.access_id_by_name(connection, name)
