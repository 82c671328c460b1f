"""Auth methods: create (AWS IAM, API key), list, show, change, delete (SPEC section 5)."""

from __future__ import annotations

from typing import Annotated

import typer

from strongroom.cli.client import Json
from strongroom.cli.commands.common import (
    NEEDS_READ,
    DebugOption,
    JsonOption,
    ProfileOption,
    ServerUrlOption,
    connect,
    object_name,
    print_or,
)
from strongroom.cli.profiles import DEFAULT_PROFILE

NameOption = Annotated[str, typer.Option("--name", help="Name of the auth method.")]
ListOption = Annotated[list[str] | None, typer.Option()]


def _aws_iam_fields(
    *,
    bound_aws_account_id: list[str] | None,
    bound_arn: list[str] | None,
    bound_role_name: list[str] | None,
    bound_role_id: list[str] | None,
    bound_resource_id: list[str] | None,
    bound_user_name: list[str] | None,
    bound_user_id: list[str] | None,
    bound_ips: list[str] | None,
    sts_url: str | None,
    jwt_ttl: int | None,
    access_expires: str | None,
    description: str | None,
) -> Json:
    """The fields that were given (None means "not given", so PATCH changes only those)."""
    given: Json = {
        "bound_aws_account_id": bound_aws_account_id,
        "bound_arn": bound_arn,
        "bound_role_name": bound_role_name,
        "bound_role_id": bound_role_id,
        "bound_resource_id": bound_resource_id,
        "bound_user_name": bound_user_name,
        "bound_user_id": bound_user_id,
        "bound_ips": bound_ips,
        "sts_url": sts_url,
        "jwt_ttl": jwt_ttl,
        "access_expires": access_expires,
        "description": description,
    }
    return {key: value for key, value in given.items() if value is not None}


BoundAccountOption = Annotated[
    list[str] | None,
    typer.Option(
        "--bound-aws-account-id", metavar="ID", help="AWS account allowed to log in (repeat)."
    ),
]
BoundArnOption = Annotated[
    list[str] | None,
    typer.Option("--bound-arn", metavar="ARN", help="Allowed identity ARN, * globs (repeat)."),
]
BoundRoleNameOption = Annotated[
    list[str] | None,
    typer.Option("--bound-role-name", metavar="NAME", help="Allowed IAM role name (repeat)."),
]
BoundRoleIdOption = Annotated[
    list[str] | None,
    typer.Option("--bound-role-id", metavar="ID", help="Allowed IAM role ID, AROA… (repeat)."),
]
BoundResourceIdOption = Annotated[
    list[str] | None,
    typer.Option(
        "--bound-resource-id",
        metavar="ID",
        help="Allowed session name, e.g. an EC2 instance ID (repeat).",
    ),
]
BoundUserNameOption = Annotated[
    list[str] | None,
    typer.Option("--bound-user-name", metavar="NAME", help="Allowed IAM user name (repeat)."),
]
BoundUserIdOption = Annotated[
    list[str] | None,
    typer.Option("--bound-user-id", metavar="ID", help="Allowed IAM user ID (repeat)."),
]
BoundIpsOption = Annotated[
    list[str] | None,
    typer.Option("--bound-ips", metavar="CIDR", help="Addresses logins must come from (repeat)."),
]
StsUrlOption = Annotated[
    str | None,
    typer.Option(
        "--sts-url", metavar="URL", help="STS endpoint [default: https://sts.amazonaws.com]"
    ),
]
JwtTtlOption = Annotated[
    int | None,
    typer.Option("--jwt-ttl", metavar="MIN", min=1, max=720, help="Token lifetime in minutes."),
]
AccessExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--access-expires",
        metavar="WHEN",
        help="No login after this moment (ISO 8601, e.g. 2030-01-31T00:00:00Z).",
    ),
]
DescriptionOption = Annotated[
    str | None, typer.Option("--description", metavar="TEXT", help="Free text.")
]


def create_auth_method_aws_iam(
    name: NameOption,
    bound_aws_account_id: BoundAccountOption = None,
    bound_arn: BoundArnOption = None,
    bound_role_name: BoundRoleNameOption = None,
    bound_role_id: BoundRoleIdOption = None,
    bound_resource_id: BoundResourceIdOption = None,
    bound_user_name: BoundUserNameOption = None,
    bound_user_id: BoundUserIdOption = None,
    bound_ips: BoundIpsOption = None,
    sts_url: StsUrlOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an AWS IAM auth method and print its Access ID.

    Machines whose IAM identity matches every bound can log in; bind more than the account:

        strongroom create-auth-method-aws-iam --name iamAuth1 \\
            --bound-aws-account-id 123456789012 --bound-role-name app-role
    """
    object_name(name, kind="auth method", option="'--name'")
    if not bound_aws_account_id:
        raise typer.BadParameter(
            "required (repeat it for more accounts)", param_hint="'--bound-aws-account-id'"
        )
    body = {"type": "aws_iam", "name": name} | _aws_iam_fields(
        bound_aws_account_id=bound_aws_account_id,
        bound_arn=bound_arn,
        bound_role_name=bound_role_name,
        bound_role_id=bound_role_id,
        bound_resource_id=bound_resource_id,
        bound_user_name=bound_user_name,
        bound_user_id=bound_user_id,
        bound_ips=bound_ips,
        sts_url=sts_url,
        jwt_ttl=jwt_ttl,
        access_expires=access_expires,
        description=description,
    )
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_auth_method(body)
        print_or(s.out, created, lambda: s.out.line(f"Access ID: {created['access_id']}"))


def create_auth_method_api_key(
    name: NameOption,
    bound_ips: BoundIpsOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Create an API key auth method; print its Access ID and access key (shown only once)."""
    object_name(name, kind="auth method", option="'--name'")
    body: Json = {"type": "api_key", "name": name}
    for key, value in (
        ("bound_ips", bound_ips),
        ("jwt_ttl", jwt_ttl),
        ("access_expires", access_expires),
        ("description", description),
    ):
        if value is not None:
            body[key] = value
    with connect(profile, as_json, server_url, debug) as s:
        created = s.client.create_auth_method(body)
        if as_json:
            s.out.json(created)
            return
        s.out.line(f"Access ID: {created['access_id']}")
        s.out.line(f"Access Key: {created['access_key']}")
        s.out.notice("Store the access key now: it is not shown again.")


def _bounds_summary(method: Json) -> str:
    parts = []
    for key in (
        "bound_aws_account_id",
        "bound_role_name",
        "bound_arn",
        "bound_role_id",
        "bound_resource_id",
        "bound_user_name",
        "bound_user_id",
        "bound_ips",
    ):
        values = method.get(key)
        if values:
            parts.append(f"{key.removeprefix('bound_')}={','.join(map(str, values))}")
    return "; ".join(parts)


def list_auth_methods(
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """List the auth methods you may list (access IDs and bounds: those you may read)."""
    with connect(profile, as_json, server_url, debug) as s:
        methods = s.client.list_auth_methods()
        if as_json:
            s.out.json({"auth_methods": methods})
        elif not methods:
            s.out.notice("No auth methods you may list.")
        else:
            s.out.table(
                ["Name", "Type", "Access ID", "Bounds"],
                [
                    [
                        m.get("name"),
                        m.get("type"),
                        m.get("access_id", NEEDS_READ),
                        _bounds_summary(m) if "access_id" in m else "",
                    ]
                    for m in methods
                ],
            )


def get_auth_method(
    name: NameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Show an auth method: its bounds, token lifetime and associated roles."""
    object_name(name, kind="auth method", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        method = s.client.get_auth_method(name)
        if as_json:
            s.out.json(method)
            return
        associations = method.get("associations") or []
        pairs = [
            (key, value)
            for key, value in method.items()
            if key != "associations" and value not in (None, "", [])
        ]
        pairs.append(
            (
                "associations",
                [f"{a.get('role_name')} ({a.get('assoc_id')})" for a in associations] or "(none)",
            )
        )
        s.out.fields(pairs)


def update_auth_method_aws_iam(
    name: NameOption,
    bound_aws_account_id: BoundAccountOption = None,
    bound_arn: BoundArnOption = None,
    bound_role_name: BoundRoleNameOption = None,
    bound_role_id: BoundRoleIdOption = None,
    bound_resource_id: BoundResourceIdOption = None,
    bound_user_name: BoundUserNameOption = None,
    bound_user_id: BoundUserIdOption = None,
    bound_ips: BoundIpsOption = None,
    sts_url: StsUrlOption = None,
    jwt_ttl: JwtTtlOption = None,
    access_expires: AccessExpiresOption = None,
    description: DescriptionOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Change an AWS IAM auth method: only the options you give change.

    A list option replaces the whole stored list (give it several times for several values):

        strongroom update-auth-method-aws-iam --name iamAuth1 \\
            --bound-role-name app-role --bound-role-name web-role
    """
    object_name(name, kind="auth method", option="'--name'")
    changes = _aws_iam_fields(
        bound_aws_account_id=bound_aws_account_id,
        bound_arn=bound_arn,
        bound_role_name=bound_role_name,
        bound_role_id=bound_role_id,
        bound_resource_id=bound_resource_id,
        bound_user_name=bound_user_name,
        bound_user_id=bound_user_id,
        bound_ips=bound_ips,
        sts_url=sts_url,
        jwt_ttl=jwt_ttl,
        access_expires=access_expires,
        description=description,
    )
    if not changes:
        raise typer.BadParameter("nothing to change: give at least one option to update")
    with connect(profile, as_json, server_url, debug) as s:
        updated = s.client.update_auth_method(name, changes)
        print_or(s.out, updated, lambda: s.out.line(f"Auth method {name} was successfully updated"))


def delete_auth_method(
    name: NameOption,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
    server_url: ServerUrlOption = None,
    debug: DebugOption = False,
) -> None:
    """Delete an auth method; tokens obtained through it stop working at once."""
    object_name(name, kind="auth method", option="'--name'")
    with connect(profile, as_json, server_url, debug) as s:
        s.client.delete_auth_method(name)
        print_or(
            s.out,
            {"name": name, "deleted": True},
            lambda: s.out.line(f"Auth method {name} was successfully deleted"),
        )
