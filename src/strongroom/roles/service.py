"""Access roles, their rules and their associations with auth methods (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth import token_repository
from strongroom.auth.tokens import Caller
from strongroom.auth_methods.service import AuthMethodService
from strongroom.db.engine import Database
from strongroom.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    RuleTooComplexError,
)
from strongroom.kit.clock import isoformat_z
from strongroom.kit.ids import new_assoc_id
from strongroom.kit.names import validate_object_name
from strongroom.rbac import (
    Capability,
    Rule,
    RuleType,
    parse_capabilities,
    validate_new_rule_path,
    validate_rule_path,
)
from strongroom.rbac.escalation import (
    Refusal,
    Refused,
    check_grants,
    check_removal,
    check_rule_change,
    holds_deny,
)
from strongroom.request_context import RequestContext
from strongroom.roles import repository
from strongroom.roles.checks import EscalationChecks
from strongroom.roles.repository import StoredRole
from strongroom.roles.schemas import (
    AssociationCreate,
    AssociationCreated,
    Role,
    RoleAssociation,
    RoleCreate,
    RoleCreated,
    RoleDetail,
    RoleList,
    RoleName,
    RoleRule,
    RuleUpdate,
    RuleWritten,
)

# Rules in one role. Every rule of a role is checked when the role is associated, and every
# rule a caller holds takes part in each of its checks.
MAX_RULES_PER_ROLE = 256

GRANT_REFUSED = (
    "you can grant only capabilities you hold on every path the rule can match, "
    "for as long as the rule lasts"
)
ASSOCIATION_REFUSED = (
    "you can associate a role with an auth method only if you hold everything the role grants"
)
DENY_REFUSED = (
    "you can remove, shorten or cut off a deny only where you hold every capability it takes away"
)
CHANGED_DURING_CHECK = "the role changed while this change was being checked; retry"


def refusal_error(refused: Refused, grant_message: str, action: str) -> ForbiddenError:
    """The 403 for a change the no-escalation checks refused; the rule goes to the audit."""
    rule = refused.rule
    expiry = isoformat_z(rule.expires_at) if rule.expires_at else "never"
    message = DENY_REFUSED if refused.why is Refusal.DENY else grant_message
    return ForbiddenError(
        message,
        reason=f"escalation refused ({action}, {refused.why.value}): "
        f"{sorted(c.value for c in rule.capabilities)} on {rule.rule_type.value} {rule.path}, "
        f"expiring {expiry}",
    )


def parse_rule_type(unverified: str) -> RuleType:
    try:
        return RuleType(unverified)
    except ValueError:
        raise InvalidRequestError(
            f"rule_type must be one of {[t.value for t in RuleType]}"
        ) from None


def upsert_rule(connection: Connection, role_id: int, rule: Rule, now: datetime) -> None:
    """Store ``rule`` as the role's rule of its (rule_type, path), replacing any earlier one,
    in the caller's transaction; every worker's caches are refreshed."""
    repository.put_rule(connection, role_id, rule, now)
    token_repository.bump_generation(connection)


class RoleService:
    """Roles, rules and associations. Every change is authorized first, then checked for
    escalation (``strongroom.rbac.escalation``, on the checks' thread), then written."""

    def __init__(self, database: Database, writer: AuditWriter, checks: EscalationChecks) -> None:
        self._db = database
        self._writer = writer
        self._checks = checks

    def create(
        self, caller: Caller | None, body: RoleCreate, context: RequestContext
    ) -> RoleCreated:
        context.event.path = "/" + body.name
        if caller is not None:
            caller.require(Capability.CREATE, RuleType.ROLE, "/" + body.name, context.now)
        try:
            with audited_write(self._db, self._writer, context.event, 201) as connection:
                repository.insert_role(connection, body.name, body.description, context.now)
        except IntegrityError as exc:
            raise ConflictError(f"a role named {body.name!r} already exists") from exc
        return RoleCreated(name=body.name, description=body.description)

    def list(self, caller: Caller, context: RequestContext) -> RoleList:
        """Every role the caller may list, by name; its description and creation time only
        when the caller may also read it (its rules and associations: ``get``)."""
        with self._db.read() as connection:
            rows = repository.all_roles(connection)
        listed: list[Role | RoleName] = []
        for row in rows:
            allowed = caller.rules.allowed(RuleType.ROLE, "/" + row.name, context.now)
            if Capability.LIST not in allowed:
                continue
            # Reconnaissance: list alone shows which roles exist, not what they are for.
            if Capability.READ in allowed:
                listed.append(
                    Role(name=row.name, description=row.description, created_at=row.created_at)
                )
            else:
                listed.append(RoleName(name=row.name))
        return RoleList(roles=listed)

    def get(self, caller: Caller, name: str, context: RequestContext) -> RoleDetail:
        self._authorize(caller, Capability.READ, name, context)
        with self._db.read() as connection:
            role = self._role_by_name(connection, name)
            rules = repository.stored_rules(connection, role.id)
            associations = repository.associations_of_role(connection, role.id)
        return RoleDetail(
            name=role.name,
            description=role.description,
            created_at=role.created_at,
            rules=[
                RoleRule(
                    rule_type=r.rule_type,
                    path=r.path,
                    capabilities=list(r.capabilities),
                    expires_at=r.expires_at,
                    expired=r.expires_at is not None and r.expires_at <= context.now,
                )
                for r in rules
            ],
            associations=[
                RoleAssociation(
                    assoc_id=a.assoc_id,
                    auth_method=a.auth_method,
                    access_id=a.access_id,
                    sub_claims=a.sub_claims,
                )
                for a in associations
            ],
        )

    async def delete(self, caller: Caller, name: str, context: RequestContext) -> None:
        """Delete the role; tokens that carried it through an association are revoked.

        Attack: deleting a deny-only role the caller holds, then logging in again without it.
        A role's denies go with it, so each must be one the caller may lift.
        """
        self._authorize(caller, Capability.DELETE, name, context)
        with self._db.read() as connection:
            denies = self._live_denies(
                connection, self._role_by_name(connection, name).id, context.now
            )
        await self._check_removal(caller, denies, context.now, "role.delete")
        with audited_write(self._db, self._writer, context.event, 204) as connection:
            role = self._locked_role(connection, name)
            if self._live_denies(connection, role.id, context.now) != denies:
                raise ConflictError(CHANGED_DURING_CHECK)
            for association_id in repository.association_ids_of_role(connection, role.id):
                token_repository.delete_tokens_carrying(connection, association_id)
            repository.delete_role(connection, role.id)
            token_repository.bump_generation(connection)

    async def set_rule(
        self, caller: Caller, name: str, body: RuleUpdate, context: RequestContext
    ) -> RuleWritten:
        """Set (or replace) the rule of (role, rule_type, path).

        No escalation: the caller must hold what the rule grants for as long as it lasts, and
        replacing a deny by a rule without it (or with an earlier expiry) lifts the deny.
        """
        self._authorize(caller, Capability.UPDATE, name, context)
        rule_type = parse_rule_type(body.rule_type)
        path = validate_new_rule_path(body.path, rule_type)
        capabilities = parse_capabilities(body.capabilities)
        expires_at = context.now + timedelta(minutes=body.ttl) if body.ttl else None
        new = Rule(rule_type, path, capabilities, expires_at)
        with self._db.read() as connection:
            old = self._rule_at(connection, self._role_by_name(connection, name).id, new)
        refused = await self._checks.run(
            lambda budget: check_rule_change(caller.rules, old, new, context.now, budget)
        )
        if refused is not None:
            raise refusal_error(refused, GRANT_REFUSED, "role.rule.set")
        with audited_write(self._db, self._writer, context.event, 200) as connection:
            role = self._locked_role(connection, name)
            # The check judged replacing `old`: a rule changed since then was not judged.
            if self._rule_at(connection, role.id, new) != old:
                raise ConflictError(CHANGED_DURING_CHECK)
            if old is None and repository.rule_count(connection, role.id) >= MAX_RULES_PER_ROLE:
                raise RuleTooComplexError(f"a role holds at most {MAX_RULES_PER_ROLE} rules")
            upsert_rule(connection, role.id, new, context.now)
        return RuleWritten(
            role_name=name,
            rule_type=rule_type,
            path=path,
            capabilities=sorted(capabilities),
            expires_at=expires_at,
        )

    async def delete_rule(
        self,
        caller: Caller,
        name: str,
        rule_type_text: str,
        path_text: str,
        context: RequestContext,
    ) -> None:
        """Remove the rule of (role, rule_type, path).

        Attack: deleting the deny rule of one's own role and reading what it denied with the
        same token. Removing a deny is allowed only where the caller may lift it.
        """
        self._authorize(caller, Capability.UPDATE, name, context)
        rule_type = parse_rule_type(rule_type_text)
        path = validate_rule_path(path_text, rule_type)
        key = Rule(rule_type, path, frozenset())
        with self._db.read() as connection:
            old = self._rule_at(connection, self._role_by_name(connection, name).id, key)
        if old is None:
            raise NotFoundError(f"role {name!r} has no {rule_type.value} for {path}")
        await self._check_removal(caller, [old], context.now, "role.rule.delete")
        with audited_write(self._db, self._writer, context.event, 204) as connection:
            role = self._locked_role(connection, name)
            if self._rule_at(connection, role.id, key) != old:
                raise ConflictError(CHANGED_DURING_CHECK)
            repository.delete_rule(connection, role.id, rule_type, path)
            token_repository.bump_generation(connection)

    async def associate(
        self, caller: Caller, name: str, body: AssociationCreate, context: RequestContext
    ) -> AssociationCreated:
        """Associate the role with an auth method: whoever logs in through it gets the role.

        Attack: associating one's own auth method with a stronger role and logging in again.
        The caller must be able to read the auth method and must hold everything the role
        grants (each rule's capabilities on its every path, for as long as the rule lasts).
        """
        self._authorize(caller, Capability.UPDATE, name, context)
        # No escalation: only auth methods the caller may read can be tied to a role.
        caller.require(Capability.READ, RuleType.AUTH_METHOD, "/" + body.auth_method, context.now)
        with self._db.read() as connection:
            role = self._role_by_name(connection, name)
            AuthMethodService.id_by_name(connection, body.auth_method)
            rules = repository.rules_of_roles(connection, [role.id])
        refused = await self._checks.run(
            lambda budget: check_grants(caller.rules, rules, context.now, budget)
        )
        if refused is not None:
            raise refusal_error(refused, ASSOCIATION_REFUSED, "role.associate")
        # Rules added to the role from here on were checked against their own authors, and
        # the outcome is that of this association first and those changes after it: no
        # second look is needed, unlike for a removal.
        assoc_id = new_assoc_id()
        with audited_write(self._db, self._writer, context.event, 201) as connection:
            role = self._role_by_name(connection, name)
            method_id = AuthMethodService.id_by_name(connection, body.auth_method)
            repository.insert_association(
                connection,
                assoc_id=assoc_id,
                role_id=role.id,
                auth_method_id=method_id,
                sub_claims=body.sub_claims,
                now=context.now,
            )
            token_repository.bump_generation(connection)
        return AssociationCreated(assoc_id=assoc_id, role_name=name, auth_method=body.auth_method)

    async def dissociate(
        self, caller: Caller, name: str, assoc_id: str, context: RequestContext
    ) -> None:
        """Remove the association; tokens that carry it are revoked with it.

        Attack: cutting a deny role off one's own auth method and logging in again without
        it. The role's denies leave the method's logins, so each must be one the caller may
        lift.
        """
        self._authorize(caller, Capability.UPDATE, name, context)
        if len(assoc_id) > 32:
            raise NotFoundError("no such association")
        with self._db.read() as connection:
            role = self._role_by_name(connection, name)
            self._association_id(connection, role.id, name, assoc_id)
            denies = self._live_denies(connection, role.id, context.now)
        await self._check_removal(caller, denies, context.now, "role.dissociate")
        with audited_write(self._db, self._writer, context.event, 204) as connection:
            role = self._locked_role(connection, name)
            association_id = self._association_id(connection, role.id, name, assoc_id)
            if self._live_denies(connection, role.id, context.now) != denies:
                raise ConflictError(CHANGED_DURING_CHECK)
            token_repository.delete_tokens_carrying(connection, association_id)
            repository.delete_association(connection, association_id)
            token_repository.bump_generation(connection)

    async def _check_removal(
        self, caller: Caller, rules: Sequence[Rule], now: datetime, action: str
    ) -> None:
        """Raise ForbiddenError unless the caller may take ``rules`` away from their holders."""
        if not any(holds_deny(rule, now) for rule in rules):
            return  # removing grants never gives anyone more: no need for the thread
        refused = await self._checks.run(
            lambda budget: check_removal(caller.rules, rules, now, budget)
        )
        if refused is not None:
            raise refusal_error(refused, GRANT_REFUSED, action)

    @staticmethod
    def _live_denies(connection: Connection, role_id: int, now: datetime) -> tuple[Rule, ...]:
        """The role's rules that take something away at ``now``, in a stable order."""
        rules = repository.rules_of_roles(connection, [role_id])
        rules = [rule for rule in rules if holds_deny(rule, now)]
        return tuple(sorted(rules, key=lambda rule: (rule.rule_type.value, rule.path)))

    @staticmethod
    def _rule_at(connection: Connection, role_id: int, key: Rule) -> Rule | None:
        """The role's rule of ``key``'s type and path, if it has one."""
        return repository.rule_at(connection, role_id, key.rule_type, key.path)

    @staticmethod
    def _association_id(connection: Connection, role_id: int, name: str, assoc_id: str) -> int:
        found = repository.association_id(connection, role_id, assoc_id)
        if found is None:
            raise NotFoundError(f"role {name!r} has no association {assoc_id!r}")
        return found

    @staticmethod
    def _authorize(
        caller: Caller, capability: Capability, name: str, context: RequestContext
    ) -> None:
        validate_object_name(name, kind="role")
        context.event.path = "/" + name
        caller.require(capability, RuleType.ROLE, "/" + name, context.now)

    @staticmethod
    def _role_by_name(connection: Connection, name: str) -> StoredRole:
        role = repository.role_by_name(connection, name)
        if role is None:
            raise NotFoundError(f"no role named {name!r}")
        return role

    @staticmethod
    def _locked_role(connection: Connection, name: str) -> StoredRole:
        """The role, locked until the transaction ends (PostgreSQL; a SQLite write
        transaction holds the whole database already): changes to one role's rules and
        associations are serialized, so what a check judged is still there when it is
        written."""
        role = repository.role_by_name(connection, name, lock=True)
        if role is None:
            raise NotFoundError(f"no role named {name!r}")
        return role
