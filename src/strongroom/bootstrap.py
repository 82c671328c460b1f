"""The first admin: role ``admin`` with every capability on every rule type, tied to a new
``api_key`` auth method whose access ID and key are shown once (SPEC section 4); and its
recovery when every admin key is lost (SPEC section 11, :func:`recover`).

Both act on the database directly, on the server host: what proves the right to do so is the
master key, without which the data keys (and so the digests of access keys) cannot be made.
They write through the domains' repositories, in one audited transaction each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from strongroom.audit.event import AuditEvent
from strongroom.audit.writer import AuditWriter, audited_write
from strongroom.auth import token_repository
from strongroom.auth_methods import repository as auth_method_repository
from strongroom.db.engine import Database
from strongroom.db.keys import Keys
from strongroom.errors import ConflictError
from strongroom.kit.clock import utc_now
from strongroom.kit.ids import new_access_id, new_access_key, new_assoc_id, new_request_id
from strongroom.rbac import Capability, Rule, RuleType
from strongroom.roles import repository as role_repository
from strongroom.roles.service import upsert_rule

ADMIN_ROLE = "admin"
ADMIN_CAPABILITIES = frozenset(
    {Capability.READ, Capability.LIST, Capability.CREATE, Capability.UPDATE, Capability.DELETE}
)
# As role_rules stores them.
_ADMIN_CAPABILITY_TEXT = role_repository.capabilities_text(ADMIN_CAPABILITIES)


@dataclass(frozen=True)
class AdminCredentials:
    access_id: str
    access_key: str
    auth_method: str


@dataclass(frozen=True)
class AdminRecovery:
    """What :func:`recover` did: the new key, and what it had to put back."""

    credentials: AdminCredentials
    role_recreated: bool  # the admin role was gone
    rules_restored: bool  # its rules were not (only) the bootstrap's
    other_admin_methods: tuple[tuple[str, str], ...]  # (name, access ID) still tied to it


def is_bootstrapped(database: Database) -> bool:
    with database.read() as connection:
        return role_repository.role_by_name(connection, ADMIN_ROLE) is not None


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
        if role_repository.role_by_name(connection, ADMIN_ROLE) is not None:
            raise ConflictError(
                "already bootstrapped: the admin role exists. Use an admin key to create more "
                "auth methods (strongroom create-auth-method-api-key)."
            )
        role_id = _create_admin_role(connection, now)
        _admin_method(connection, keys, role_id, access_id, access_key, method_name, now)
        event.access_id = access_id
        event.auth_method = method_name
    return AdminCredentials(access_id=access_id, access_key=access_key, auth_method=method_name)


def recover(database: Database, keys: Keys, writer: AuditWriter) -> AdminRecovery:
    """A fresh admin API key when every other one is lost (``strongroom bootstrap --recover``).

    A new ``api_key`` auth method tied to the role ``admin``, rather than a new key for an
    existing one: the old admin methods may be gone (deleted, dissociated), and one of them
    may be what other automation logs in with. They stay as they are, listed in the result, for
    the operator to delete with the new key once the lost one is known to be gone. The role is
    put back if it was deleted, and its rules set back to the bootstrap's (every capability on
    ``/*`` of every rule type, no expiry, no deny): a recovered key that a deny or an expired
    rule still locked out would recover nothing.

    ConfigurationError (raised before this) is how a missing master key refuses: the digest of
    the new key needs the data keys. Raises NotBootstrappedError on a database never
    bootstrapped (``strongroom bootstrap`` is the command there).
    """
    now = utc_now()
    event = AuditEvent(
        time=now,
        request_id=new_request_id(),
        source_ip="local",
        action="sys.bootstrap.recover",
        path="/",
    )
    access_id = new_access_id()
    access_key = new_access_key()
    method_name = f"admin-recovery-{access_id[2:8]}"
    with audited_write(database, writer, event, 201) as connection:
        role = role_repository.role_by_name(connection, ADMIN_ROLE)
        role_id = None if role is None else role.id
        recreated = role_id is None
        if role_id is None:
            # Whether any auth method exists: the bootstrap made the first one.
            if not auth_method_repository.any_method(connection):
                raise NotBootstrappedError(
                    "this database was never bootstrapped: run `strongroom bootstrap`"
                )
            role_id = _create_admin_role(connection, now)
            restored = False
        else:
            restored = _restore_admin_rules(connection, role_id, now)
        others = role_repository.methods_of_role(connection, role_id)
        _admin_method(
            connection,
            keys,
            role_id,
            access_id,
            access_key,
            method_name,
            now,
            description="administrator recovered with strongroom bootstrap --recover",
        )
        event.access_id = access_id
        event.auth_method = method_name
        put_back = [("admin role recreated", recreated), ("admin rules restored", restored)]
        event.reason = "; ".join(text for text, done in put_back if done) or None
    return AdminRecovery(
        credentials=AdminCredentials(access_id, access_key, method_name),
        role_recreated=recreated,
        rules_restored=restored,
        other_admin_methods=tuple(others),
    )


class NotBootstrappedError(Exception):
    """``bootstrap --recover`` on a database that never had an admin."""


def _create_admin_role(connection: Connection, now: datetime) -> int:
    role_id = role_repository.insert_role(
        connection, ADMIN_ROLE, "every capability everywhere", now
    )
    for rule_type in RuleType:
        upsert_rule(connection, role_id, Rule(rule_type, "/*", ADMIN_CAPABILITIES), now)
    return role_id


def _restore_admin_rules(connection: Connection, role_id: int, now: datetime) -> bool:
    """Set the admin role's rules back to the bootstrap's; whether they were otherwise."""
    wanted = {(rule_type.value, "/*", _ADMIN_CAPABILITY_TEXT) for rule_type in RuleType}
    found = role_repository.unexpiring_rules(connection, role_id)
    total = role_repository.rule_count(connection, role_id)
    if found == wanted and total == len(wanted):
        return False
    role_repository.delete_rules(connection, role_id)
    for rule_type in RuleType:
        upsert_rule(connection, role_id, Rule(rule_type, "/*", ADMIN_CAPABILITIES), now)
    return True


def _admin_method(
    connection: Connection,
    keys: Keys,
    role_id: int,
    access_id: str,
    access_key: str,
    name: str,
    now: datetime,
    description: str = "bootstrap administrator",
) -> None:
    """A new api_key auth method with ``access_key`` (as its digest), tied to the admin role."""
    method_id = auth_method_repository.insert_method(
        connection,
        access_id=access_id,
        name=name,
        method_type="api_key",
        description=description,
        config={},
        access_key_digest=keys.digester.digest(access_key),
        now=now,
    )
    role_repository.insert_association(
        connection,
        assoc_id=new_assoc_id(),
        role_id=role_id,
        auth_method_id=method_id,
        sub_claims={},
        now=now,
    )
    token_repository.bump_generation(connection)
