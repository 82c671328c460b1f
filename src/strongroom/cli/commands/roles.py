"""Access roles, their rules and their associations with auth methods (SPEC section 4)."""

from __future__ import annotations

from typing import Annotated

import typer

from strongroom.cli.commands.common import (
    NEEDS_READ,
    DebugOption,
    JsonOption,
    ProfileOption,
    ServerUrlOption,
    connect,
    object_name,
    parse_sub_claims,
    print_or,
)
from strongroom.cli.profiles import DEFAULT_PROFILE
from strongroom.rbac import Capability, RuleType

RoleNameOption = Annotated[str, typer.Option("--name", help="Name of the access role.")]
RoleRefOption = Annotated[str, typer.Option("--role-name", help="Name of the access role.")]
RuleTypeOption = Annotated[
    RuleType,
    typer.Option(
        "--rule-type",
        case_sensitive=False,
        help="What the path names: secrets (item-rule), auth methods, roles or the audit log.",
    ),
]


def create_role(
    name: RoleNameOption,
    description: Annotated[str, typer.Option("--description", metavar="TEXT")] = "",
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an access role. Give it rules (set-role-rule) and auth methods (assoc-role-am)."""
    object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_role(name, description)
        print_or(s.out, created, lambda: s.out.line(f"Role {name} was successfully created"))


def list_roles(
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """List the access roles you may list (descriptions: those you may read)."""
    with connect(profile, as_json, server_url, debug) as s:
        roles = s.client.list_roles()
        if as_json:
            s.out.json({"roles": roles})
        elif not roles:
            s.out.notice("No access roles you may list.")
        else:
            s.out.table(
                ["Name", "Description", "Created"],
                [
                    [r.get("name"), r.get("description", NEEDS_READ), r.get("created_at")]
                    for r in roles
                ],
            )


def get_role(
    name: RoleNameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Show an access role with its rules and associated auth methods."""
    object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        role = s.client.get_role(name)
        if as_json:
            s.out.json(role)
            return
        s.out.fields([("Name", role.get("name")), ("Description", role.get("description") or "")])
        s.out.table(
            ["Rule type", "Path", "Capabilities", "Expires"],
            [
                [
                    r.get("rule_type"),
                    r.get("path"),
                    r.get("capabilities"),
                    ("expired " if r.get("expired") else "") + (r.get("expires_at") or "never"),
                ]
                for r in role.get("rules") or []
            ],
            title="Rules",
        )
        s.out.table(
            ["Assoc ID", "Auth method", "Access ID", "Sub-claims"],
            [
                [a.get("assoc_id"), a.get("auth_method"), a.get("access_id"), a.get("sub_claims")]
                for a in role.get("associations") or []
            ],
            title="Associations",
        )


def delete_role(
    name: RoleNameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete an access role; tokens that carried it lose it at once."""
    object_name(name, kind="role", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_role(name)
        print_or(
            s.out,
            {"name": name, "deleted": True},
            lambda: s.out.line(f"Role {name} was successfully deleted"),
        )


def set_role_rule(
    role_name: RoleRefOption,
    path: Annotated[
        str,
        typer.Option(
            "--path",
            help="Pattern: * any run of characters, + one segment, {{claim}} a login claim.",
        ),
    ],
    capability: Annotated[
        list[Capability],
        typer.Option("--capability", case_sensitive=False, help="Capability to grant (repeat)."),
    ],
    rule_type: RuleTypeOption = RuleType.ITEM,
    ttl: Annotated[
        int | None, typer.Option("--ttl", metavar="MIN", min=1, help="Rule expires after MIN.")
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Set the capabilities of a role on a path (replaces a rule of the same type and path).

        strongroom set-role-rule --role-name devReaders --path "/dev/*" \\
            --capability read --capability list
    """
    object_name(role_name, kind="role", option="'--role-name'")
    capabilities = list(dict.fromkeys(c.value for c in capability))
    with connect(profile, as_json, server_url, debug) as s:
        result = s.client.set_role_rule(
            role_name, rule_type=rule_type.value, path=path, capabilities=capabilities, ttl=ttl
        )
        print_or(
            s.out,
            result,
            lambda: s.out.line(f"The requested rule was successfully set to the role {role_name}"),
        )


def delete_role_rule(
    role_name: RoleRefOption,
    path: Annotated[str, typer.Option("--path", help="The rule's path, exactly as set.")],
    rule_type: RuleTypeOption = RuleType.ITEM,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove a rule from a role."""
    object_name(role_name, kind="role", option="'--role-name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_role_rule(role_name, rule_type=rule_type.value, path=path)
        print_or(
            s.out,
            {"role_name": role_name, "rule_type": rule_type.value, "path": path, "deleted": True},
            lambda: s.out.line(f"The rule was successfully deleted from the role {role_name}"),
        )


def assoc_role_am(
    role_name: RoleRefOption,
    am_name: Annotated[str, typer.Option("--am-name", help="Name of the auth method.")],
    sub_claims: Annotated[
        list[str] | None,
        typer.Option(
            "--sub-claims",
            metavar="KEY=V1,V2",
            help=(
                "Only logins whose claim KEY matches one of the values (* globs) get the role; "
                "repeat for more claims. Claims: account_id, arn, role_name, role_id, "
                "resource_id, user_name, user_id."
            ),
        ),
    ] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Give a role to the logins of an auth method (optionally only some, by sub-claims)."""
    object_name(role_name, kind="role", option="'--role-name'")
    object_name(am_name, kind="auth method", option="'--am-name'")
    claims = parse_sub_claims(sub_claims)
    with connect(profile, as_json, server_url, debug) as s:
        result = s.client.associate(role_name, am_name, claims)
        print_or(
            s.out,
            result,
            lambda: s.out.line(f"Association {result['assoc_id']} was successfully created"),
        )


def delete_assoc(
    role_name: RoleRefOption,
    assoc_id: Annotated[
        str, typer.Option("--assoc-id", metavar="ass-…", help="As get-role shows.")
    ],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove an association; tokens that carry it are revoked."""
    object_name(role_name, kind="role", option="'--role-name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.dissociate(role_name, assoc_id)
        print_or(
            s.out,
            {"role_name": role_name, "assoc_id": assoc_id, "deleted": True},
            lambda: s.out.line(f"Association {assoc_id} was successfully deleted"),
        )
