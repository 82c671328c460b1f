"""The first admin: role ``admin`` with every capability on every rule type, tied to a new
``api_key`` auth method whose access ID and key are shown once (SPEC section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth.tokens import bump_generation
from strongroom.db.engine import Database
from strongroom.db.keys import Keys
from strongroom.db.tables import auth_methods, role_associations, roles
from strongroom.errors import ConflictError
from strongroom.kit.clock import utc_now
from strongroom.kit.ids import new_access_id, new_access_key, new_assoc_id, new_request_id
from strongroom.rbac import Capability, RuleType
from strongroom.roles.service import upsert_rule

ADMIN_ROLE = "admin"
ADMIN_CAPABILITIES = frozenset(
    {Capability.READ, Capability.LIST, Capability.CREATE, Capability.UPDATE, Capability.DELETE}
)


@dataclass(frozen=True)
class AdminCredentials:
    access_id: str
    access_key: str
    auth_method: str


def is_bootstrapped(database: Database) -> bool:
    with database.read() as connection:
        return (
            connection.execute(select(roles.c.id).where(roles.c.name == ADMIN_ROLE)).first()
            is not None
        )


def bootstrap(database: Database, keys: Keys, writer: AuditWriter) -> AdminCredentials:
    """Create the admin role and its API key; ConflictError if it exists already."""
    now = utc_now()
    event = AuditEvent(
        time=now, request_id=new_request_id(), source_ip="local", action="sys.bootstrap", path="/"
    )
    access_id = new_access_id()
    access_key = new_access_key()
    method_name = f"admin-{access_id[2:8]}"
    with audited_write(database, writer, event, 201) as connection:
        if connection.execute(select(roles.c.id).where(roles.c.name == ADMIN_ROLE)).first():
            raise ConflictError(
                "already bootstrapped: the admin role exists. Use an admin key to create more "
                "auth methods (strongroom create-auth-method-api-key)."
            )
        role_id = connection.execute(
            roles.insert()
            .values(name=ADMIN_ROLE, description="every capability everywhere", created_at=now)
            .returning(roles.c.id)
        ).scalar_one()
        for rule_type in RuleType:
            upsert_rule(connection, role_id, rule_type, "/*", ADMIN_CAPABILITIES, None, now)
        method_id = connection.execute(
            auth_methods.insert()
            .values(
                access_id=access_id,
                name=method_name,
                type="api_key",
                description="bootstrap administrator",
                config={},
                access_key_digest=keys.digester.digest(access_key),
                created_at=now,
                updated_at=now,
            )
            .returning(auth_methods.c.id)
        ).scalar_one()
        connection.execute(
            role_associations.insert().values(
                assoc_id=new_assoc_id(),
                role_id=role_id,
                auth_method_id=method_id,
                sub_claims={},
                created_at=now,
            )
        )
        bump_generation(connection)
        event.access_id = access_id
        event.auth_method = method_name
    return AdminCredentials(access_id=access_id, access_key=access_key, auth_method=method_name)
