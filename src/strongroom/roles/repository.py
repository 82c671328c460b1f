"""The roles domain's SQL: roles, their rules, and their associations with auth methods.

Every function runs in the caller's transaction (``Database.read()``, ``Database.write()`` or
``audited_write``): the services decide what one unit of work holds, this module only what each
statement is. Rows come back as the frozen records below, never as SQLAlchemy rows.

Rules are stored one row per (role, rule type, path), their capabilities as a comma-separated
list in :class:`~strongroom.rbac.Capability`'s order; :func:`associations_for_login` runs at
driver level (``db/driver.py``) because it sits inside every login's write transaction.

Changing a rule or an association does not bump the cache generation here: the services do,
in the same transaction (``auth/token_repository.bump_generation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select

from strongroom.db import driver
from strongroom.db.records import record_from_row
from strongroom.db.tables import auth_methods, role_associations, role_rules, roles
from strongroom.rbac import Capability, Rule, RuleType

_CAPABILITY_ORDER = tuple(Capability)


@dataclass(frozen=True, slots=True)
class StoredRole:
    id: int
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule as shown: its capabilities in the stored (Capability's) order."""

    rule_type: RuleType
    path: str
    capabilities: tuple[Capability, ...]
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class AssociatedMethod:
    """An association seen from its role: the auth method it ties the role to."""

    assoc_id: str
    auth_method: str
    access_id: str
    sub_claims: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class AssociatedRole:
    """An association seen from its auth method: the role it gives."""

    assoc_id: str
    role_name: str


@dataclass(frozen=True, slots=True)
class LoginAssociation:
    """An association a login through its auth method may match (``sub_claims``)."""

    id: int
    sub_claims: Mapping[str, Sequence[str]]
    role_name: str


def capabilities_text(capabilities: Iterable[Capability]) -> str:
    """The stored form of a capability set: comma-separated, in Capability's order."""
    wanted = frozenset(capabilities)
    return ",".join(c.value for c in _CAPABILITY_ORDER if c in wanted)


def _capabilities(text: str) -> frozenset[Capability]:
    return frozenset(Capability(c) for c in text.split(",") if c)


def _role(row: Any) -> StoredRole:
    return record_from_row(StoredRole, row, id=int(row.id))


# -- roles ---------------------------------------------------------------------------------


def role_by_name(connection: Connection, name: str, *, lock: bool = False) -> StoredRole | None:
    """The role named ``name``, or None. ``lock``: locked until the transaction ends
    (PostgreSQL's row lock; a SQLite write transaction holds the whole database already)."""
    query = select(roles).where(roles.c.name == name)
    row = connection.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _role(row)


def all_roles(connection: Connection) -> list[StoredRole]:
    """Every role, by name."""
    return [_role(row) for row in connection.execute(select(roles).order_by(roles.c.name))]


def insert_role(connection: Connection, name: str, description: str, now: datetime) -> int:
    """Add a role; its id. IntegrityError when the name is taken."""
    role_id: int = connection.execute(
        roles.insert()
        .values(name=name, description=description, created_at=now)
        .returning(roles.c.id)
    ).scalar_one()
    return role_id


def delete_role(connection: Connection, role_id: int) -> None:
    """Remove the role; its rules and associations go with it (foreign keys cascade)."""
    connection.execute(delete(roles).where(roles.c.id == role_id))


# -- rules ---------------------------------------------------------------------------------


_RULE_COLUMNS = (
    role_rules.c.rule_type,
    role_rules.c.path,
    role_rules.c.capabilities,
    role_rules.c.expires_at,
)


def rules_of_roles(connection: Connection, role_ids: Sequence[int]) -> list[Rule]:
    """Every rule of the roles ``role_ids``, as the decisions use them (``rbac.Rule``)."""
    if not role_ids:
        return []
    rows = connection.execute(select(*_RULE_COLUMNS).where(role_rules.c.role_id.in_(role_ids)))
    return [
        Rule(
            rule_type=RuleType(row.rule_type),
            path=row.path,
            capabilities=_capabilities(row.capabilities),
            expires_at=row.expires_at,
        )
        for row in rows
    ]


def stored_rules(connection: Connection, role_id: int) -> list[StoredRule]:
    """The role's rules, by rule type and path."""
    rows = connection.execute(
        select(*_RULE_COLUMNS)
        .where(role_rules.c.role_id == role_id)
        .order_by(role_rules.c.rule_type, role_rules.c.path)
    )
    return [
        StoredRule(
            rule_type=RuleType(row.rule_type),
            path=row.path,
            capabilities=tuple(Capability(c) for c in row.capabilities.split(",")),
            expires_at=row.expires_at,
        )
        for row in rows
    ]


def rule_at(connection: Connection, role_id: int, rule_type: RuleType, path: str) -> Rule | None:
    """The role's rule of ``rule_type`` on ``path``, if it has one."""
    row = connection.execute(
        select(role_rules.c.capabilities, role_rules.c.expires_at).where(
            role_rules.c.role_id == role_id,
            role_rules.c.rule_type == rule_type.value,
            role_rules.c.path == path,
        )
    ).first()
    if row is None:
        return None
    return Rule(rule_type, path, _capabilities(row.capabilities), row.expires_at)


def rule_count(connection: Connection, role_id: int) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(role_rules).where(role_rules.c.role_id == role_id)
        ).scalar_one()
    )


def put_rule(connection: Connection, role_id: int, rule: Rule, now: datetime) -> None:
    """Store ``rule`` as the role's rule of its (rule_type, path), replacing any earlier one."""
    delete_rule(connection, role_id, rule.rule_type, rule.path)
    connection.execute(
        role_rules.insert().values(
            role_id=role_id,
            rule_type=rule.rule_type.value,
            path=rule.path,
            capabilities=capabilities_text(rule.capabilities),
            expires_at=rule.expires_at,
            created_at=now,
        )
    )


def delete_rule(connection: Connection, role_id: int, rule_type: RuleType, path: str) -> None:
    connection.execute(
        delete(role_rules).where(
            role_rules.c.role_id == role_id,
            role_rules.c.rule_type == rule_type.value,
            role_rules.c.path == path,
        )
    )


def delete_rules(connection: Connection, role_id: int) -> None:
    """Remove every rule of the role."""
    connection.execute(delete(role_rules).where(role_rules.c.role_id == role_id))


def unexpiring_rules(connection: Connection, role_id: int) -> set[tuple[str, str, str]]:
    """``(rule_type, path, capabilities text)`` of the role's rules without an expiry."""
    return {
        (row.rule_type, row.path, row.capabilities)
        for row in connection.execute(
            select(role_rules.c.rule_type, role_rules.c.path, role_rules.c.capabilities).where(
                role_rules.c.role_id == role_id, role_rules.c.expires_at.is_(None)
            )
        )
    }


# -- associations --------------------------------------------------------------------------


def associations_of_role(connection: Connection, role_id: int) -> list[AssociatedMethod]:
    """The role's associations, by auth method name."""
    rows = connection.execute(
        select(
            role_associations.c.assoc_id,
            role_associations.c.sub_claims,
            auth_methods.c.name.label("auth_method"),
            auth_methods.c.access_id,
        )
        .join(auth_methods, auth_methods.c.id == role_associations.c.auth_method_id)
        .where(role_associations.c.role_id == role_id)
        .order_by(auth_methods.c.name)
    ).all()
    return [record_from_row(AssociatedMethod, row) for row in rows]


def associations_of_method(connection: Connection, method_id: int) -> list[AssociatedRole]:
    """The associations of the auth method ``method_id``, by role name."""
    rows = connection.execute(
        select(role_associations.c.assoc_id, roles.c.name.label("role_name"))
        .join(roles, roles.c.id == role_associations.c.role_id)
        .where(role_associations.c.auth_method_id == method_id)
        .order_by(roles.c.name)
    ).all()
    return [record_from_row(AssociatedRole, row) for row in rows]


def role_ids_of_method(connection: Connection, method_id: int) -> list[int]:
    """The roles associated with the auth method ``method_id``, each once, in id order."""
    rows = connection.execute(
        select(role_associations.c.role_id).where(role_associations.c.auth_method_id == method_id)
    )
    return sorted({int(row.role_id) for row in rows})


def methods_of_role(connection: Connection, role_id: int) -> list[tuple[str, str]]:
    """``(name, access ID)`` of every auth method associated with the role, by name."""
    rows = connection.execute(
        select(auth_methods.c.name, auth_methods.c.access_id)
        .join(role_associations, role_associations.c.auth_method_id == auth_methods.c.id)
        .where(role_associations.c.role_id == role_id)
        .order_by(auth_methods.c.name)
    ).all()
    return [(str(row.name), str(row.access_id)) for row in rows]


def association_ids_of_role(connection: Connection, role_id: int) -> list[int]:
    """The row ids of the role's associations."""
    rows = connection.execute(
        select(role_associations.c.id).where(role_associations.c.role_id == role_id)
    )
    return [int(row.id) for row in rows]


def association_id(connection: Connection, role_id: int, assoc_id: str) -> int | None:
    """The row id of the role's association ``assoc_id``, or None."""
    row = connection.execute(
        select(role_associations.c.id).where(
            role_associations.c.assoc_id == assoc_id,
            role_associations.c.role_id == role_id,
        )
    ).first()
    return None if row is None else int(row.id)


def insert_association(
    connection: Connection,
    *,
    assoc_id: str,
    role_id: int,
    auth_method_id: int,
    sub_claims: Mapping[str, Sequence[str]],
    now: datetime,
) -> None:
    connection.execute(
        role_associations.insert().values(
            assoc_id=assoc_id,
            role_id=role_id,
            auth_method_id=auth_method_id,
            sub_claims=sub_claims,
            created_at=now,
        )
    )


def delete_association(connection: Connection, association_id: int) -> None:
    connection.execute(delete(role_associations).where(role_associations.c.id == association_id))


# Driver level: inside every login's write transaction (db/driver.py).
_LOGIN_ASSOCIATIONS_SQL = (
    "SELECT role_associations.id, role_associations.sub_claims, roles.name "
    "FROM role_associations JOIN roles ON roles.id = role_associations.role_id "
    "WHERE role_associations.auth_method_id = ?"
)


def associations_for_login(connection: Connection, method_id: int) -> list[LoginAssociation]:
    """Every association of the auth method ``method_id``, for a login to match its claims
    against (at driver level, in the login's transaction)."""
    db = driver.cursor(connection)
    db.execute(driver.sql(connection, _LOGIN_ASSOCIATIONS_SQL), (method_id,))
    rows = db.fetchall()
    db.close()
    return [
        LoginAssociation(
            id=int(association_id),
            sub_claims=driver.loaded_json(sub_claims) or {},
            role_name=str(role_name),
        )
        for association_id, sub_claims, role_name in rows
    ]
