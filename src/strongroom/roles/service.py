"""Access roles, their rules and their associations with auth methods (SPEC section 4)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.exc import IntegrityError

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth.tokens import Caller, bump_generation
from strongroom.auth_methods.service import AuthMethodService
from strongroom.db.engine import Database
from strongroom.db.tables import (
    auth_methods,
    role_associations,
    role_rules,
    roles,
    token_associations,
    tokens,
)
from strongroom.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from strongroom.kit.clock import isoformat_z
from strongroom.kit.ids import new_assoc_id
from strongroom.kit.names import validate_object_name
from strongroom.rbac import Capability, RuleType, parse_capabilities, validate_rule_path
from strongroom.roles.schemas import AssociationCreate, RoleCreate, RuleSet

_CAPABILITY_ORDER = [c.value for c in Capability]


def parse_rule_type(unverified: str) -> RuleType:
    try:
        return RuleType(unverified)
    except ValueError:
        raise InvalidRequestError(
            f"rule_type must be one of {[t.value for t in RuleType]}"
        ) from None


def upsert_rule(
    connection: Connection,
    role_id: int,
    rule_type: RuleType,
    path: str,
    capabilities: frozenset[Capability],
    expires_at: datetime | None,
    now: datetime,
) -> None:
    """Set the capabilities of (role, rule_type, path), replacing any earlier ones."""
    connection.execute(
        delete(role_rules).where(
            role_rules.c.role_id == role_id,
            role_rules.c.rule_type == rule_type.value,
            role_rules.c.path == path,
        )
    )
    connection.execute(
        role_rules.insert().values(
            role_id=role_id,
            rule_type=rule_type.value,
            path=path,
            capabilities=",".join(c for c in _CAPABILITY_ORDER if Capability(c) in capabilities),
            expires_at=expires_at,
            created_at=now,
        )
    )
    bump_generation(connection)


class RoleService:
    def __init__(self, database: Database, writer: AuditWriter) -> None:
        self._db = database
        self._writer = writer

    def create(
        self, caller: Caller | None, body: RoleCreate, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        event.path = "/" + body.name
        if caller is not None:
            caller.require(Capability.CREATE, RuleType.ROLE, "/" + body.name, now)
        try:
            with audited_write(self._db, self._writer, event, 201) as connection:
                connection.execute(
                    roles.insert().values(
                        name=body.name, description=body.description, created_at=now
                    )
                )
        except IntegrityError as exc:
            raise ConflictError(f"a role named {body.name!r} already exists") from exc
        return {"name": body.name, "description": body.description}

    def list(self, caller: Caller, now: datetime) -> list[dict[str, Any]]:
        """Every role the caller may list, by name; its description and creation time only
        when the caller may also read it (its rules and associations: ``get``)."""
        with self._db.read() as connection:
            rows = connection.execute(select(roles).order_by(roles.c.name)).all()
        listed: list[dict[str, Any]] = []
        for row in rows:
            allowed = caller.rules.allowed(RuleType.ROLE, "/" + row.name, now)
            if Capability.LIST not in allowed:
                continue
            # Reconnaissance: list alone shows which roles exist, not what they are for.
            if Capability.READ in allowed:
                listed.append(
                    {
                        "name": row.name,
                        "description": row.description,
                        "created_at": isoformat_z(row.created_at),
                    }
                )
            else:
                listed.append({"name": row.name})
        return listed

    def get(self, caller: Caller, name: str, event: AuditEvent, now: datetime) -> dict[str, Any]:
        self._authorize(caller, Capability.READ, name, event, now)
        with self._db.read() as connection:
            role = self._role_by_name(connection, name)
            rules = connection.execute(
                select(role_rules)
                .where(role_rules.c.role_id == role.id)
                .order_by(role_rules.c.rule_type, role_rules.c.path)
            ).all()
            associations = connection.execute(
                select(
                    role_associations.c.assoc_id,
                    role_associations.c.sub_claims,
                    auth_methods.c.name.label("auth_method"),
                    auth_methods.c.access_id,
                )
                .join(auth_methods, auth_methods.c.id == role_associations.c.auth_method_id)
                .where(role_associations.c.role_id == role.id)
                .order_by(auth_methods.c.name)
            ).all()
        return {
            "name": role.name,
            "description": role.description,
            "created_at": isoformat_z(role.created_at),
            "rules": [
                {
                    "rule_type": r.rule_type,
                    "path": r.path,
                    "capabilities": r.capabilities.split(","),
                    "expires_at": isoformat_z(r.expires_at) if r.expires_at else None,
                    "expired": r.expires_at is not None and r.expires_at <= now,
                }
                for r in rules
            ],
            "associations": [
                {
                    "assoc_id": a.assoc_id,
                    "auth_method": a.auth_method,
                    "access_id": a.access_id,
                    "sub_claims": a.sub_claims,
                }
                for a in associations
            ],
        }

    def delete(self, caller: Caller, name: str, event: AuditEvent, now: datetime) -> None:
        """Delete the role; tokens that carried it through an association are revoked."""
        self._authorize(caller, Capability.DELETE, name, event, now)
        with audited_write(self._db, self._writer, event, 204) as connection:
            role = self._role_by_name(connection, name)
            for association in connection.execute(
                select(role_associations.c.id).where(role_associations.c.role_id == role.id)
            ):
                revoke_tokens_of_association(connection, association.id)
            connection.execute(delete(roles).where(roles.c.id == role.id))
            bump_generation(connection)

    def set_rule(
        self, caller: Caller, name: str, body: RuleSet, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        self._authorize(caller, Capability.UPDATE, name, event, now)
        rule_type = parse_rule_type(body.rule_type)
        path = validate_rule_path(body.path, rule_type)
        capabilities = parse_capabilities(body.capabilities)
        # No escalation: a caller can grant only what it holds on every path the rule can match.
        if not caller.rules.covers(rule_type, path, capabilities, now):
            raise ForbiddenError(
                "you can grant only capabilities you hold on every path the rule can match",
                reason=f"escalation refused: {sorted(capabilities)} on {rule_type.value} {path}",
            )
        expires_at = now + timedelta(minutes=body.ttl) if body.ttl else None
        with audited_write(self._db, self._writer, event, 200) as connection:
            role = self._role_by_name(connection, name)
            upsert_rule(connection, role.id, rule_type, path, capabilities, expires_at, now)
        return {
            "role_name": name,
            "rule_type": rule_type.value,
            "path": path,
            "capabilities": sorted(c.value for c in capabilities),
            "expires_at": isoformat_z(expires_at) if expires_at else None,
        }

    def delete_rule(
        self,
        caller: Caller,
        name: str,
        rule_type_text: str,
        path_text: str,
        event: AuditEvent,
        now: datetime,
    ) -> None:
        self._authorize(caller, Capability.UPDATE, name, event, now)
        rule_type = parse_rule_type(rule_type_text)
        path = validate_rule_path(path_text, rule_type)
        with audited_write(self._db, self._writer, event, 204) as connection:
            role = self._role_by_name(connection, name)
            result = connection.execute(
                delete(role_rules).where(
                    role_rules.c.role_id == role.id,
                    role_rules.c.rule_type == rule_type.value,
                    role_rules.c.path == path,
                )
            )
            if result.rowcount == 0:
                raise NotFoundError(f"role {name!r} has no {rule_type.value} for {path}")
            bump_generation(connection)

    def associate(
        self, caller: Caller, name: str, body: AssociationCreate, event: AuditEvent, now: datetime
    ) -> dict[str, Any]:
        self._authorize(caller, Capability.UPDATE, name, event, now)
        # No escalation: only auth methods the caller may read can be tied to a role.
        caller.require(Capability.READ, RuleType.AUTH_METHOD, "/" + body.auth_method, now)
        assoc_id = new_assoc_id()
        with audited_write(self._db, self._writer, event, 201) as connection:
            role = self._role_by_name(connection, name)
            method_id = AuthMethodService.id_by_name(connection, body.auth_method)
            connection.execute(
                role_associations.insert().values(
                    assoc_id=assoc_id,
                    role_id=role.id,
                    auth_method_id=method_id,
                    sub_claims=body.sub_claims,
                    created_at=now,
                )
            )
            bump_generation(connection)
        return {"assoc_id": assoc_id, "role_name": name, "auth_method": body.auth_method}

    def dissociate(
        self, caller: Caller, name: str, assoc_id: str, event: AuditEvent, now: datetime
    ) -> None:
        """Remove the association; tokens that carry it are revoked with it."""
        self._authorize(caller, Capability.UPDATE, name, event, now)
        if len(assoc_id) > 32:
            raise NotFoundError("no such association")
        with audited_write(self._db, self._writer, event, 204) as connection:
            role = self._role_by_name(connection, name)
            association = connection.execute(
                select(role_associations.c.id).where(
                    role_associations.c.assoc_id == assoc_id,
                    role_associations.c.role_id == role.id,
                )
            ).first()
            if association is None:
                raise NotFoundError(f"role {name!r} has no association {assoc_id!r}")
            revoke_tokens_of_association(connection, association.id)
            connection.execute(
                delete(role_associations).where(role_associations.c.id == association.id)
            )
            bump_generation(connection)

    @staticmethod
    def _authorize(
        caller: Caller, capability: Capability, name: str, event: AuditEvent, now: datetime
    ) -> None:
        validate_object_name(name, kind="role")
        event.path = "/" + name
        caller.require(capability, RuleType.ROLE, "/" + name, now)

    @staticmethod
    def _role_by_name(connection: Connection, name: str) -> Any:
        row = connection.execute(select(roles).where(roles.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no role named {name!r}")
        return row


def revoke_tokens_of_association(connection: Connection, association_id: int) -> None:
    """Delete every token that carries the association (SPEC: dissociation revokes)."""
    carriers = select(token_associations.c.token_id).where(
        token_associations.c.association_id == association_id
    )
    connection.execute(delete(tokens).where(tokens.c.id.in_(carriers)))
